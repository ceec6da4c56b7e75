import Foundation
import GRDB
import GRDBSQLite

/// Errors raised by the run database.
public enum StoreError: Error, CustomStringConvertible {
    /// The database file could not be opened or created.
    case cannotOpen(path: String, reason: String)
    /// A migration file is missing or unreadable (a broken installation).
    case migrationsMissing(String)
    /// `query` was given no statement or several (it runs exactly one).
    case oneStatement(count: Int)
    /// A read-only command was pointed at a database that does not exist (none is created).
    case noDatabase(path: String)
    /// `query` was given a statement that would write.
    case notReadOnly(String)
    /// A stored value is malformed (e.g. a BLOB of the wrong length).
    case corrupt(String)
    /// An underlying SQLite failure, with the operation that failed.
    case sqlite(operation: String, message: String)
    /// A command that writes was pointed at a database it cannot write (file or directory
    /// permissions, a read-only mount); nothing was changed.
    case readOnly(path: String, reason: String)
    /// The disk (or SQLite's page limit) filled up during a write; that transaction was
    /// rolled back, everything committed before it is kept.
    case diskFull(path: String, operation: String)
    /// Another process redid or discarded a stage this process's work depends on (e.g.
    /// `--force train` while an attribution task ran); this process's write was refused.
    case superseded(String)
    /// A database written by an older kneuron, opened read-only, so not migrated.
    case outdatedSchema(path: String, pending: [String])

    /// `cannotOpen` for a file that is not SQLite at all.
    static func notSQLite(path: String) -> StoreError {
        .cannotOpen(path: path, reason: "the file is not a SQLite database; give the path of a kneuron run database (or a new path)")
    }

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            return "cannot open database \(path): \(reason)"
        case .oneStatement(let count):
            return count == 0 ? "no SQL statement given" : "give one SQL statement at a time (found \(count) separated by ';')"
        case .noDatabase(let path):
            return "no run database at \(path); give the path of an existing run (`kneuron run SPEC` creates runs/<spec name>.sqlite)"
        case .migrationsMissing(let m):
            return "schema migrations not found (\(m)); rebuild kneuron from a checkout that has migrations/*.sql"
        case .notReadOnly(let sql):
            return "refusing to run a statement that writes: \(sql.prefix(120)). `kneuron query` is read-only."
        case .corrupt(let what):
            return "database content is malformed: \(what)"
        case .sqlite(let op, let message):
            return "SQLite error while \(op): \(message)"
        case .readOnly(let path, let reason):
            return "database \(path) is read-only (\(reason)); commands that run stages record their work in it and need write access. "
                + "Nothing in it was changed. Read it with `kneuron status --db \(path)` or `kneuron query --db \(path) SQL`, "
                + "or make it and its directory writable (or copy it with its .artifacts directory to a writable place) and run again."
        case .outdatedSchema(let path, let pending):
            return "database \(path) was written by an older kneuron: schema migrations \(pending.joined(separator: ", ")) are not applied yet, "
                + "and read-only commands do not migrate. Run any command that writes it once, e.g. `kneuron run SPEC --db \(path)` "
                + "(it migrates and keeps every recorded score; it then redoes only the stages a migration asks for, which `kneuron status` lists as left)"
        case .superseded(let what):
            return what + ". Run the command again to work from the current state."
        case .diskFull(let path, let operation):
            return "disk full while \(operation) in \(path): that write was rolled back and everything committed before it is kept. "
                + "Free space on the disk and run the same command again; it resumes where it stopped."
        }
    }
}

/// The SQLite database of one run. It owns the connection pool (WAL, foreign keys on,
/// busy timeout), applies the migrations in `migrations/NNNN_name.sql` in order when
/// opened (recorded in GRDB's `grdb_migrations` table), and offers one write method
/// per stage, each a single transaction that includes the stage's ledger row.
public final class RunDatabase: @unchecked Sendable {
    /// Path of the database file.
    public let path: String
    /// How score sets and shard sums are stored (`ScoreStorage`).
    public let storage: ScoreStorage
    let pool: DatabasePool

    /// Opens (creating when needed) the database at `path` and migrates it.
    /// - Parameter readOnly: open without write access (no migration; for `query`/`status`).
    /// - Parameter storage: ranked rows per score set and shard-sum chunk size (kneuron's own by default).
    /// - Throws: `StoreError.cannotOpen`, `StoreError.migrationsMissing`.
    public init(path: String, readOnly: Bool = false, storage: ScoreStorage = ScoreStorage()) throws {
        self.path = path
        self.storage = storage
        var config = Configuration()
        config.readonly = readOnly
        config.busyMode = .timeout(60)
        config.foreignKeysEnabled = true
        // A 128 MiB page cache (allocated only as used) for the large reads and writes of
        // scores and shard sums.
        let maxPages = ProcessInfo.processInfo.environment["KNEURON_DEBUG_MAX_PAGES"].flatMap(Int.init)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA cache_size = -131072")
            // Test hook: a page limit makes SQLite fail with SQLITE_FULL as a full disk would.
            if let maxPages { try db.execute(sql: "PRAGMA max_page_count = \(maxPages)") }
        }
        do {
            if !readOnly {
                let dir = (path as NSString).deletingLastPathComponent
                if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            }
            try Self.preflight(path: path, readOnly: readOnly)
            pool = try DatabasePool(path: readOnly ? Self.readOnlyOpenPath(path) : path, configuration: config)
        } catch let e as StoreError {
            throw e
        } catch let e as DatabaseError where e.resultCode == .SQLITE_NOTADB {
            throw StoreError.notSQLite(path: path)
        } catch {
            throw StoreError.cannotOpen(path: path, reason: "\(error); check that the directory exists and is writable and that its disk is not full")
        }
        if !readOnly { try migrate() }
    }

    /// The name SQLite opens for a read-only command (`status`, `query`).
    ///
    /// A WAL database with no `-shm` file (no process has it open) needs SQLite to create the
    /// `-shm` (and `-wal`) file next to it even to read. That is impossible when the directory is
    /// read-only, and when another user reads it the files it leaves belong to that user, which
    /// locks the owner out. So unless this user owns the database and can write its directory,
    /// it is opened as an immutable URI (`file:...?immutable=1`), which reads the main file
    /// without creating anything.
    /// - Throws: `StoreError.cannotOpen` when a non-empty `-wal` holds changes not yet copied
    ///   into the main file (the last writer was killed): an immutable read would silently miss
    ///   them.
    static func readOnlyOpenPath(_ path: String) throws -> String {
        let fm = FileManager.default
        if fm.fileExists(atPath: path + "-shm") { return path }
        let dir = (path as NSString).deletingLastPathComponent
        let directoryWritable = access(dir.isEmpty ? "." : dir, W_OK) == 0
        var st = stat()
        let owned = stat(path, &st) == 0 && st.st_uid == geteuid()
        if directoryWritable && owned { return path }
        let walBytes = ((try? fm.attributesOfItem(atPath: path + "-wal"))?[.size] as? NSNumber)?.intValue ?? 0
        if walBytes > 0 {
            throw StoreError.cannotOpen(path: path, reason: "its \(path)-wal holds \(walBytes) bytes of changes not yet written into the database "
                + "(the last run was stopped), and reading them needs SQLite's -shm file, which this user "
                + (directoryWritable ? "should not create (it would belong to this user, not to the database's owner)" : "cannot create (the directory is not writable)")
                + (owned ? ". Make the directory writable and run `kneuron status --db \(path)` once, or copy the .sqlite and its -wal file to a writable directory"
                         : ". Run `kneuron status --db \(path)` once as the database's owner, or copy the .sqlite and its -wal file to a directory of yours"))
        }
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "?#%")
        let absolute = path.hasPrefix("/") ? path : fm.currentDirectoryPath + "/" + path
        return "file:" + (absolute.addingPercentEncoding(withAllowedCharacters: allowed) ?? absolute) + "?immutable=1"
    }

    /// Checks that the database at `path` (when it exists) and its directory can be written:
    /// SQLite needs both (the `-wal` and `-shm` files live next to the database).
    /// - Throws: `StoreError.readOnly` naming what is not writable; `StoreError.cannotOpen` when
    ///   the database does not exist and its directory is not writable.
    public static func requireWritable(path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let directory = dir.isEmpty ? "." : dir
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists, FileManager.default.fileExists(atPath: directory), access(directory, W_OK) != 0 {
            throw StoreError.cannotOpen(path: path, reason: "cannot create it: directory \(directory) is not writable (\(String(cString: strerror(errno))))")
        }
        for (file, what) in [(path, "the file"), (directory, "its directory \(directory)"),
                             (path + "-wal", "its \(path)-wal file"), (path + "-shm", "its \(path)-shm file")] {
            guard exists, FileManager.default.fileExists(atPath: file) else { continue }
            if access(file, W_OK) != 0 {
                throw StoreError.readOnly(path: path, reason: "\(what) is not writable: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Every check made before a database is opened, without changing anything:
    /// `requireRunDatabase`, and for writing `requireWritable`. Commands call it before taking
    /// the run's lock too, so a refused path gets no lock file.
    /// - Throws: `StoreError.cannotOpen`, `.noDatabase`, `.readOnly`.
    public static func preflight(path: String, readOnly: Bool) throws {
        try requireRunDatabase(path: path, readOnly: readOnly)
        if !readOnly { try requireWritable(path: path) }
    }

    /// Refuses, without changing it, an existing path that is not a kneuron run database: a
    /// directory, a file that is not SQLite, or a SQLite database with schema objects but no
    /// kneuron schema (no `grdb_migrations` table: someone else's database). A missing or
    /// empty file passes when `readOnly` is false (it becomes a new run database).
    /// - Throws: `StoreError.cannotOpen` with the reason; `StoreError.noDatabase` (read-only,
    ///   missing file).
    public static func requireRunDatabase(path: String, readOnly: Bool) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            var st = stat()
            if stat(path, &st) != 0 && errno != ENOENT {
                throw StoreError.cannotOpen(path: path, reason: "\(String(cString: strerror(errno))) (check the permissions of the file and of its directories)")
            }
            if readOnly { throw StoreError.noDatabase(path: path) }
            return
        }
        if isDirectory.boolValue { throw StoreError.cannotOpen(path: path, reason: "it is a directory; give the path of a .sqlite file") }
        let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
        if size == 0 {
            if readOnly { throw StoreError.cannotOpen(path: path, reason: "the file is empty, not a kneuron run database") }
            return
        }
        func schemaObjects(readWrite: Bool) throws -> [String] {
            var config = Configuration()
            config.readonly = !readWrite
            config.busyMode = .timeout(60)   // another process may be migrating or writing it
            let queue = try DatabaseQueue(path: readWrite ? path : try readOnlyOpenPath(path), configuration: config)
            return try queue.read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'") }
        }
        let objects: [String]
        let hotJournal = ((try? FileManager.default.attributesOfItem(atPath: path + "-journal"))?[.size] as? NSNumber)?.intValue ?? 0 > 0
        do {
            objects = try schemaObjects(readWrite: false)
        } catch let e as StoreError {
            throw e
        } catch let e as DatabaseError where e.resultCode == .SQLITE_NOTADB {
            throw StoreError.notSQLite(path: path)
        } catch let e as DatabaseError where e.resultCode == .SQLITE_READONLY && hotJournal {
            // A hot rollback journal: the last writer was killed inside a transaction (e.g. while
            // a new run database switched to WAL mode), and SQLite must roll it back before
            // anything can read the file, which a read-only connection cannot do.
            guard !readOnly else {
                throw StoreError.cannotOpen(path: path, reason: "the last process writing it was killed inside a transaction (\(path)-journal is a hot journal); "
                    + "run any command that writes the run (e.g. `kneuron run SPEC --db \(path)`): opening it for writing rolls that transaction back")
            }
            _ = e
            objects = try schemaObjects(readWrite: true)   // opening read-write rolls the journal back
        }
        if !objects.contains("grdb_migrations") && (readOnly || !objects.isEmpty) {
            throw StoreError.cannotOpen(path: path, reason: "it is a SQLite database without the kneuron schema (\(objects.count) tables/views/indexes of its own), "
                + "not a kneuron run database; give " + (readOnly ? "the path of a run database" : "a new path"))
        }
    }

    /// The schema migrations compiled into the binary from `migrations/NNNN_name.sql` (build
    /// plugin EmbedMigrations), in name order.
    /// - Throws: `StoreError.migrationsMissing` when the build embedded none.
    public static func migrationFiles() throws -> [(name: String, sql: String)] {
        let all = EmbeddedMigrations.all.sorted { $0.name < $1.name }
        if all.isEmpty { throw StoreError.migrationsMissing("no migrations were embedded at build time") }
        return all
    }

    /// Names of the compiled-in migrations not yet applied to this database (a database opened
    /// read-only is not migrated).
    /// - Throws: `StoreError.sqlite`, `.migrationsMissing`.
    public func pendingMigrations() throws -> [String] {
        let applied = Set(try appliedMigrations())
        return try Self.migrationFiles().map(\.name).filter { !applied.contains($0) }
    }

    /// Throws unless every compiled-in migration is applied (for read-only commands that read
    /// the current schema, e.g. `status`).
    /// - Throws: `StoreError.outdatedSchema` naming the pending migrations.
    public func requireCurrentSchema() throws {
        let pending = try pendingMigrations()
        if !pending.isEmpty { throw StoreError.outdatedSchema(path: path, pending: pending) }
    }

    /// Data steps that SQL cannot do, run right after their migration's SQL in its transaction.
    static let afterMigration: [String: @Sendable (Database, ScoreStorage) throws -> Void] = [
        "0007_score_storage": packScoreRows,
    ]

    /// Migration 0007: every score of the existing (non-random) sets had a row in score_values;
    /// writes them as float32 rows of score_rows (exact: they were float32 values stored as
    /// REAL), then keeps score_values rows only for ranks 1 ... `storage.rankedRows`. A set that
    /// misses rows (a damaged database) is left as it was, so the migration completes and reading
    /// that set later says what to do (`--force attribute`).
    static func packScoreRows(_ db: Database, _ storage: ScoreStorage) throws {
        let st = try db.makeStatement(sql: "INSERT INTO score_rows (set_id, block_index, row, scores) VALUES (?, ?, ?, ?)")
        var incomplete: Set<Int64> = []
        for set in try Row.fetchAll(db, sql: "SELECT set_id, n_scores FROM score_sets WHERE method != 'random' ORDER BY set_id") {
            let id: Int64 = set[0], n: Int = set[1]
            let base = id * ScoreStorage.setStride
            let stored = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM score_values WHERE id >= ? AND id < ?", arguments: [base, base + ScoreStorage.setStride]) ?? 0
            guard stored == n else { incomplete.insert(id); continue }
            for b in try Row.fetchAll(db, sql: "SELECT block_index, n_rows, n_cols, offset FROM score_blocks WHERE set_id = ? ORDER BY block_index", arguments: [id]) {
                let rows: Int = b[1], cols: Int = b[2], offset: Int64 = b[3]
                let values = try Double.fetchAll(db, sql: "SELECT score FROM score_values WHERE id >= ? AND id < ? ORDER BY id",
                                                 arguments: [base + offset, base + offset + Int64(rows * cols)])
                guard values.count == rows * cols else { incomplete.insert(id); break }
                for r in 0 ..< rows {
                    var blob = Data(capacity: cols * 4)
                    for c in 0 ..< cols { withUnsafeBytes(of: Float(values[r * cols + c]).bitPattern.littleEndian) { blob.append(contentsOf: $0) } }
                    try st.execute(arguments: [id, b[0], r, blob])
                }
            }
        }
        for id in incomplete { try db.execute(sql: "DELETE FROM score_rows WHERE set_id = ?", arguments: [id]) }
        let width = try Int.fetchOne(db, sql: "SELECT MAX(n_cols) FROM score_blocks") ?? 0
        try db.execute(sql: "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?) INSERT INTO score_columns SELECT i FROM c WHERE i < ?",
                       arguments: [width, width])
        try db.execute(sql: "DELETE FROM score_values WHERE rank > ? AND id / 4294967296 NOT IN (SELECT value FROM json_each(?))",
                       arguments: [storage.rankedRows, "[" + incomplete.map(String.init).joined(separator: ",") + "]"])
    }

    private func migrate() throws {
        var migrator = DatabaseMigrator()
        for m in try Self.migrationFiles() {
            let storage = self.storage
            migrator.registerMigration(m.name) { db in
                try db.execute(sql: m.sql)
                try Self.afterMigration[m.name]?(db, storage)
            }
        }
        // Migrate only when a migration is pending, so an up-to-date database is not written.
        // Array tasks opening an old database at the same moment race here: GRDB runs each
        // pending migration in its own transaction, so the loser finds its migration already
        // applied (or fails on the schema the winner changed). Whatever it failed on, the
        // database is fine when every migration is recorded afterwards.
        try wrap("migrating \(path)") {
            if try pool.read({ try migrator.hasCompletedMigrations($0) }) { return }
            do {
                try migrator.migrate(pool)
            } catch {
                if try pool.read({ try migrator.hasCompletedMigrations($0) }) { return }
                throw error
            }
        }
    }

    /// Runs `body` in one write transaction. Internal: stage writes use it.
    func write<T>(_ operation: String, _ body: (Database) throws -> T) throws -> T {
        try wrap(operation) { try pool.write(body) }
    }

    /// Runs `body` with a read-only connection. Internal.
    func read<T>(_ operation: String, _ body: (Database) throws -> T) throws -> T {
        try wrap(operation) { try pool.read(body) }
    }

    func wrap<T>(_ operation: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as DatabaseError {
            switch e.resultCode {
            case .SQLITE_FULL: throw StoreError.diskFull(path: path, operation: operation)
            case .SQLITE_READONLY: throw StoreError.readOnly(path: path, reason: e.message ?? "SQLite refused to write")
            default: throw StoreError.sqlite(operation: operation, message: "\(e.message ?? "") (code \(e.resultCode.rawValue))")
            }
        }
    }

    /// Names of the applied migrations, in order.
    public func appliedMigrations() throws -> [String] {
        try read("reading migrations") { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid")
        }
    }

    /// Size of the database file plus its WAL, in bytes.
    public func sizeBytes() -> Int64 {
        var total: Int64 = 0
        for suffix in ["", "-wal"] {
            if let attrs = try? FileManager.default.attributesOfItem(atPath: path + suffix),
               let n = attrs[.size] as? NSNumber { total += n.int64Value }
        }
        return total
    }

    /// Checkpoints the WAL into the main file (for an accurate size and a single-file copy).
    public func checkpoint() throws {
        try wrap("checkpointing WAL") { _ = try pool.writeWithoutTransaction { db in try db.checkpoint(.truncate) } }
    }

    // MARK: Read-only queries

    /// The result of `query`: column names and rows of optional text values.
    public struct QueryResult: Sendable {
        /// Column names in select order.
        public var columns: [String]
        /// The cells: `Int64`, `Double`, `String`, or nil for SQL NULL; a BLOB is shown as
        /// the string `<blob N bytes>`. JSON output keeps numbers as numbers from these.
        public var typedRows: [[Sendable?]]
        /// The same cells as text (numbers as Swift prints them; nil is SQL NULL).
        public var rows: [[String?]] {
            typedRows.map { $0.map { cell in cell.map { "\($0)" } } }
        }
    }

    /// Runs one read-only SQL statement and returns its rows.
    /// - Throws: `StoreError.notReadOnly` when the statement would write (checked by
    ///   SQLite's `sqlite3_stmt_readonly`), `StoreError.sqlite` for a bad statement.
    public func query(_ sql: String) throws -> QueryResult {
        try wrap("running query") {
            try pool.read { db in
                let statements = try Array(db.allStatements(sql: sql))
                guard statements.count == 1, let statement = statements.first else { throw StoreError.oneStatement(count: statements.count) }
                guard statement.isReadonly else { throw StoreError.notReadOnly(sql) }
                var columns = statement.columnNames
                var typed: [[Sendable?]] = []
                let cursor = try Row.fetchCursor(statement)
                while let row = try cursor.next() {
                    if columns.isEmpty { columns = Array(row.columnNames) }
                    typed.append(row.databaseValues.map { v -> Sendable? in
                        switch v.storage {
                        case .null: return nil
                        case .int64(let i): return i
                        case .double(let d): return d
                        case .string(let s): return s
                        case .blob(let b): return "<blob \(b.count) bytes>"
                        }
                    })
                }
                return QueryResult(columns: columns, typedRows: typed)
            }
        }
    }
}
