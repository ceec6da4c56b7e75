import ArgumentParser
import Pipeline
import Store

/// `kneuron status --db PATH`: per stage done/left; exit code 0 only when complete.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show per stage whether it is done or left (exit code 0 = complete, 3 = work left)."
    )
    @Option(help: "Database path.") var db: String

    func run() throws {
        let database = try RunDatabase(path: db, readOnly: true)
        let status = try RunStatus.read(db: database)
        print(status.text, terminator: "")
        if !status.complete { throw ExitCode(3) }
    }
}
