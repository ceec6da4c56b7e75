import ArgumentParser
import Pipeline
import Store

/// `kneuron status [SPEC] [--db PATH] [--shards]`: per stage done/left (and per shard with
/// `--shards`); exit code 0 only when complete.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show per stage whether it is done or left (exit code 0 = complete, 3 = work left)."
    )
    @Argument(help: "Pipeline spec, to use its default database runs/<spec name>.sqlite.") var spec: String?
    @Option(help: "Database path.") var db: String?
    @Flag(help: "Also list every attribution shard: method, index, done/left, sequences, seconds.") var shards = false

    func run() throws {
        let database = try RunDatabase(path: try databasePath(db: db, spec: spec), readOnly: true)
        try database.requireCurrentSchema()
        let status = try RunStatus.read(db: database)
        print(status.text, terminator: "")
        if shards { print("\n" + status.shardText, terminator: "") }
        if !status.complete { throw ExitCode(3) }
    }
}
