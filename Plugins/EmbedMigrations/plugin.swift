import Foundation
import PackagePlugin

/// Build-tool plugin: compiles every `migrations/NNNN_name.sql` of the package into the Store
/// module as Swift string literals (`EmbeddedMigrations.all`), so the `kneuron` binary carries
/// its schema and works wherever it is copied (no resource bundle to lose).
@main
struct EmbedMigrations: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let dir = context.package.directoryURL.appending(path: "migrations")
        let files = try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "sql" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedMigrations.swift")
        return [.buildCommand(displayName: "Embedding \(files.count) schema migrations",
                              executable: try context.tool(named: "MigrationEmbedder").url,
                              arguments: [output.path] + files.map(\.path),
                              inputFiles: files, outputFiles: [output])]
    }
}
