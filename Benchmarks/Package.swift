// swift-tools-version: 6.3
// The benchmark package for ManagedThreads: a separate package, so the library never depends on
// benchmark tooling. Run it with
//     swift run -c release --package-path Benchmarks threadbench [--help]
import PackageDescription

let package = Package(
    name: "ManagedThreadsBenchmarks",
    dependencies: [
        // `name:` fixes the identity: a bare path would take it from the folder name, which differs
        // in CI's clone.
        .package(name: "ManagedThreads", path: ".."),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        // Only for the executor scenario's baseline, NIOThreadPool; the library never depends on it.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // What the baselines need from libc that Swift's Glibc module does not import.
        .target(
            name: "CBench",
            path: "Sources/CBench",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        .executableTarget(
            name: "threadbench",
            dependencies: [
                "CBench",
                .product(name: "ManagedThreads", package: "ManagedThreads"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/threadbench"
        ),
    ],
    swiftLanguageModes: [.v6]
)
