import ArgumentParser
import Pipeline
import Store

/// `kneuron status [SPEC] [--db PATH]`: per stage done/left; exit code 0 only when complete.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show per stage whether it is done or left (exit code 0 = complete, 3 = work left)."
    )
    @Argument(help: "Pipeline spec, to use its default database runs/<spec name>.sqlite.") var spec: String?
    @Option(help: "Database path.") var db: String?

    func run() throws {
        let database = try RunDatabase(path: try databasePath(db: db, spec: spec), readOnly: true)
        let status = try RunStatus.read(db: database)
        print(status.text, terminator: "")
        if !status.complete { throw ExitCode(3) }
    }
}
