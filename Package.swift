// swift-tools-version:6.0
import PackageDescription

// Data flow: ProteinData -> ESM -> Training / Attribution -> (Store) -> Pipeline -> kneuron CLI.
// Compute modules never import Store; Store never imports compute; Pipeline is where they meet.
let package = Package(
    name: "kneuron",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "kneuron", targets: ["kneuron"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // zlib for gzip-compressed FASTA and label files.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .target(name: "ProteinData", dependencies: ["CZlib"]),
        .target(name: "ESM", dependencies: ["CBLAS"],
                swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]),
        .target(name: "Training", dependencies: ["ESM"]),
        .target(name: "Attribution", dependencies: ["ESM"]),
        // migrations/*.sql are compiled into the Store module by the EmbedMigrations plugin.
        .executableTarget(name: "MigrationEmbedder"),
        .plugin(name: "EmbedMigrations", capability: .buildTool(), dependencies: ["MigrationEmbedder"]),
        .target(name: "Store", dependencies: [.product(name: "GRDB", package: "GRDB.swift"),
                                              .product(name: "GRDBSQLite", package: "GRDB.swift")],
                plugins: ["EmbedMigrations"]),
        .target(name: "Pipeline", dependencies: [
            "ProteinData", "ESM", "Training", "Attribution", "Store",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .executableTarget(name: "kneuron", dependencies: [
            "Pipeline", "Attribution", "ESM", "ProteinData", "Store",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "ProteinDataTests", dependencies: ["ProteinData"]),
        .testTarget(name: "ESMTests", dependencies: ["ESM", "Training"], resources: [.copy("Fixtures")]),
        .testTarget(name: "AttributionTests", dependencies: ["Attribution", "ESM"], resources: [.copy("Fixtures")]),
        .testTarget(name: "StoreTests", dependencies: ["Store", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Store", "ProteinData", "ESM"]),
    ]
)
