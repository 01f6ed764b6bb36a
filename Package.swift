// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "ManagedThreads",
    products: [
        .library(name: "ManagedThreads", targets: ["ManagedThreads"]),
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
            dependencies: ["CShims"]
        ),
        .testTarget(
            name: "ManagedThreadsTests",
            dependencies: ["ManagedThreads", "CShims"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
