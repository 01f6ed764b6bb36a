// swift-tools-version: 6.3
import PackageDescription

let package = Package(
    name: "ManagedThreads",
    products: [
        .library(name: "ManagedThreads", targets: ["ManagedThreads"]),
        // Test support only: the leak-check trait, the XCTest base class, waitFor. The core does
        // not depend on it (or on Testing/XCTest).
        .library(name: "ManagedThreadsTesting", targets: ["ManagedThreadsTesting"]),
        // A ThreadGroup as a swift-service-lifecycle Service, for servers built on ServiceGroup.
        .library(name: "ManagedThreadsServiceLifecycle", targets: ["ManagedThreadsServiceLifecycle"]),
        // `swift package check-threads`: fails on raw thread creation outside ManagedThreads.
        .plugin(name: "CheckThreads", targets: ["CheckThreads"]),
    ],
    dependencies: [
        // 1.16 for the LogEvent-based LogHandler the tests implement.
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        // 2.13 for metrics created with an explicit factory (per-group factories, no global bootstrap).
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        // Only the ManagedThreadsServiceLifecycle target uses it.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // The only C in the package: what Swift cannot import or call safely.
        .target(
            name: "CShims",
            path: "CShims",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .target(
            name: "ManagedThreads",
            dependencies: [
                "CShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "ManagedThreadsTesting",
            dependencies: ["ManagedThreads", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "ManagedThreadsServiceLifecycle",
            dependencies: [
                "ManagedThreads",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "ManagedThreadsTests",
            dependencies: [
                "ManagedThreads", "ManagedThreadsTesting", "CShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "ManagedThreadsTestingTests",
            dependencies: ["ManagedThreads", "ManagedThreadsTesting", "CShims"]
        ),
        .testTarget(
            name: "ManagedThreadsServiceLifecycleTests",
            dependencies: [
                "ManagedThreads", "ManagedThreadsTesting", "ManagedThreadsServiceLifecycle",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The raw-thread guardrail. The scanner is a library so its tests can reach it; a plugin
        // can only depend on executables, so the plugin runs it through the check-threads tool.
        .target(name: "ThreadGuardrail"),
        .executableTarget(name: "check-threads", dependencies: ["ThreadGuardrail"]),
        .plugin(
            name: "CheckThreads",
            capability: .command(
                intent: .custom(
                    verb: "check-threads",
                    description: "Fails on raw thread creation (Thread, pthread_create) outside ManagedThreads"
                )
            ),
            dependencies: ["check-threads"]
        ),
        .testTarget(name: "ThreadGuardrailTests", dependencies: ["ThreadGuardrail"]),
    ],
    swiftLanguageModes: [.v6]
)
