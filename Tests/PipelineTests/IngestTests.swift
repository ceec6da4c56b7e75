import Foundation
import XCTest
@testable import Pipeline
import Store
import ProteinData

/// `kneuron ingest` without a spec, the spec's `inputs.id_column` / `ec_column` / `enzyme_dat`,
/// and how a standalone ingest meets a later spec in the ledger.
final class IngestTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kneuron-ingest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// The shared data directory: `$KNEURON_SHARED_DATA`, else `<package root>/../shared/data` (as ProteinDataTests).
    static var sharedData: URL {
        if let env = ProcessInfo.processInfo.environment["KNEURON_SHARED_DATA"], !env.isEmpty { return URL(fileURLWithPath: env) }
        return EndToEndTests.packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data")
    }

    func quirk(_ name: String) throws -> String {
        let p = Self.sharedData.appendingPathComponent("quirks/\(name)").path
        guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("real quirk file \(p) not found") }
        return p
    }

    func write(_ name: String, _ text: String) throws -> String {
        let p = dir.appendingPathComponent(name).path
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    /// Runs the ingest of `request` in process, as `kneuron ingest --fasta ... --db` does.
    func ingest(_ request: IngestRequest) throws -> (RunContext, [StageOutcome]) {
        let built = try request.spec()
        let ctx = try RunContext(spec: built.spec, specPath: "kneuron ingest (no spec)", db: try RunDatabase(path: request.databasePath),
                                 quiet: true, specYAML: built.yaml)
        ctx.allowEmptyIngest = true
        return (ctx, try PipelineRunner(context: ctx).run([.ingest]))
    }

    func testStandaloneIngestThenAMatchingSpecContinuesAndAnotherIsRefused() throws {
        let csv = try quirk("bom-crlf-comma-multi-ec.csv")
        let db = dir.appendingPathComponent("q.sqlite").path
        let (ctx, outcomes) = try ingest(IngestRequest(fasta: [], labels: [csv], databasePath: db))
        XCTAssertEqual(outcomes.map(\.ran), [true])
        let summary = try XCTUnwrap(ctx.ingestSummary)
        XCTAssertEqual(summary.files.count, 1)
        XCTAssertEqual(summary.files[0].read, 184)
        XCTAssertEqual(summary.files[0].accepted, 183)
        XCTAssertEqual(summary.files[0].rejectedByReason, ["ECs span several classes at level 1": 1])
        XCTAssertEqual(summary.files[0].joinedOrMerged, 0)
        XCTAssertEqual(summary.classes, 6)
        XCTAssertTrue(summary.text.contains("total: 183 sequences accepted in 6 classes, 1 records rejected"), summary.text)

        let database = try RunDatabase(path: db, readOnly: true)
        XCTAssertEqual(try database.sequences().count, 183)
        XCTAssertEqual(try database.rejectedRecords().map(\.recordID), ["Q92S13"])
        // Q92S13 (ECs in classes 4 and 1) stays, excluded from training, with both ECs.
        XCTAssertEqual(try database.excludedSequences().map(\.id), ["Q92S13"])
        XCTAssertEqual(try database.excludedSequences().first?.ecNumbers, ["1.2.1.22", "4.1.2.19"])
        XCTAssertEqual(try database.excludedSequences().first?.reason, "ECs span several classes at level 1: 4.1.2.19; 1.2.1.22")
        XCTAssertEqual(summary.excluded, 1)
        XCTAssertTrue(summary.text.contains("1 of the rejected sequences are kept in the database but excluded from training"), summary.text)
        XCTAssertEqual(try database.run()?.name, "q")
        XCTAssertTrue(try database.run()!.specYAML.contains("label_level: 1"))
        XCTAssertEqual(try IngestSummary.recorded(in: database).files.map(\.accepted), [183])

        // A spec naming the same file (by another path) and level continues the run.
        let spec = try write("q.yaml", """
            name: q
            inputs: {labels: [\(csv)]}
            model: {preset: tiny, max_length: 64}
            """)
        let specCtx = try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: try RunDatabase(path: db), quiet: true)
        let resumed = try PipelineRunner(context: specCtx).run([.ingest, .tokenize])
        XCTAssertEqual(resumed.map(\.ran), [false, true])

        // Another level is refused, naming the difference.
        let other = try write("q2.yaml", """
            name: q
            inputs: {labels: [\(csv)]}
            label_level: 2
            """)
        let otherCtx = try RunContext(spec: try PipelineSpec.load(path: other), specPath: other, db: try RunDatabase(path: db), quiet: true)
        XCTAssertThrowsError(try PipelineRunner(context: otherCtx).run([.ingest])) { error in
            guard case .changedInputs(let stage, _, _, let differences)? = error as? PipelineError else { return XCTFail("\(error)") }
            XCTAssertEqual(stage, "ingest")
            XCTAssertEqual(differences, ["label_level: 1 -> 2"])
        }
    }

    func testRealQuirksTSVAndEnzymeExcerptStandalone() throws {
        let tsv = try quirk("real-quirks.tsv")
        let dat = try quirk("enzyme-dat-excerpt.dat")
        let db = dir.appendingPathComponent("r.sqlite").path
        let (ctx, _) = try ingest(IngestRequest(fasta: [], labels: [tsv], enzymeDat: dat, labelLevel: 2, databasePath: db))
        let f = try XCTUnwrap(ctx.ingestSummary?.files.first)
        XCTAssertEqual(f.read, 14)
        XCTAssertEqual(f.accepted, 11)
        XCTAssertEqual(f.rejectedByReason, ["ECs give different labels at level 2": 2, "ECs unknown at level 2": 1])
        XCTAssertEqual(try RunDatabase(path: db, readOnly: true).excludedSequences().map(\.id), ["A0A2L0VXR0", "P18478"])
        // The excerpt's obsolete numbers do not occur in the real file: nothing is rewritten.
        let notes = try RunDatabase(path: db, readOnly: true).sequences().map(\.notes)
        XCTAssertFalse(notes.contains { $0.contains("enzyme.dat") })
        XCTAssertTrue(try RunDatabase(path: db, readOnly: true).stage("ingest")!.parameters.contains("inputs.enzyme_dat\tsha256 "))
    }

    /// gzip input through the stage: a compressed copy (named without `.gz`) gives the same
    /// counts as the plain file; a truncated copy stops ingest with the file and offset.
    func testGzipInputThroughTheStage() throws {
        let tsv = try quirk("real-quirks.tsv")
        let gz = dir.appendingPathComponent("quirks.tsv").path
        let cut = dir.appendingPathComponent("cut.tsv").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "gzip -c -n < '\(tsv)' > '\(gz)' && head -c 100 '\(gz)' > '\(cut)'"]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw XCTSkip("the gzip command is not available") }
        let (ctx, _) = try ingest(IngestRequest(fasta: [], labels: [gz], databasePath: dir.appendingPathComponent("gz.sqlite").path))
        let f = try XCTUnwrap(ctx.ingestSummary?.files.first)
        XCTAssertEqual(f.read, 14)
        XCTAssertEqual(f.accepted, 12)
        XCTAssertEqual(f.rejectedByReason, ["ECs span several classes at level 1": 2])
        XCTAssertThrowsError(try ingest(IngestRequest(fasta: [], labels: [cut], databasePath: dir.appendingPathComponent("cut.sqlite").path))) { error in
            XCTAssertTrue("\(error)".contains("'\(cut)' starts like gzip (bytes 1f 8b) but cannot be decompressed: the file ends inside a gzip member (truncated download or copy?), at compressed byte offset 100"), "\(error)")
        }
    }

    /// The 7,757 real set: its 172 cross-class proteins stay in `sequences` (excluded, with their
    /// ECs in `labels`), are in `rejected_records` too, and neither tokenize nor split sees them.
    func testCrossClassProteinsStayButAreNotTrainedOn() throws {
        let base = Self.sharedData.appendingPathComponent("swissprot-ec")
        let fasta = base.appendingPathComponent("swissprot-ec-7757.fasta").path
        let labels = base.appendingPathComponent("swissprot-ec-7757.ec.tsv").path
        guard FileManager.default.fileExists(atPath: fasta) else { throw XCTSkip("real data \(fasta) not found") }
        let spec = try write("x.yaml", """
            name: x
            inputs: {fasta: [\(fasta)], labels: [\(labels)]}
            model: {preset: tiny, max_length: 64}
            """)
        let db = dir.appendingPathComponent("x.sqlite").path
        let ctx = try RunContext(spec: try PipelineSpec.load(path: spec), specPath: spec, db: try RunDatabase(path: db), quiet: true)
        _ = try PipelineRunner(context: ctx).run([.ingest, .tokenize, .split])
        XCTAssertEqual(ctx.ingestSummary?.excluded, 172)
        XCTAssertEqual(ctx.ingestSummary?.accepted, 7585)
        let database = try RunDatabase(path: db, readOnly: true)
        func count(_ sql: String) throws -> String? { try database.query(sql).rows[0][0] }
        XCTAssertEqual(try count("SELECT COUNT(*) FROM sequences"), "7757")
        XCTAssertEqual(try count("SELECT COUNT(*) FROM sequences WHERE excluded_reason LIKE 'ECs span several classes at level 1: %' AND ec_label IS NULL"), "172")
        XCTAssertEqual(try count("SELECT COUNT(*) FROM labels l JOIN sequences s ON s.id = l.sequence_id WHERE s.excluded_reason IS NOT NULL"), "370")
        XCTAssertEqual(try count("SELECT COUNT(*) FROM rejected_records r JOIN sequences s ON s.id = r.record_id AND s.excluded_reason = r.reason"), "172")
        XCTAssertEqual(try count("SELECT COUNT(*) FROM tokens"), "7585")
        XCTAssertEqual(try count("SELECT COUNT(*) FROM splits"), "7585")
        XCTAssertEqual(try count("SELECT COUNT(*) FROM splits p JOIN sequences s ON s.id = p.sequence_id WHERE s.excluded_reason IS NOT NULL"), "0")
        XCTAssertEqual(try database.excludedSequences().count, 172)
        XCTAssertTrue(try database.excludedSequences().allSatisfy { Set($0.ecNumbers.map { $0.prefix(1) }).count > 1 })
    }

    func testSpecColumnsAndEnzymeDatRewriteAndReject() throws {
        let fixture = EndToEndTests.packageRoot.appendingPathComponent("data/fixtures/enzyme-tiny.dat").path
        let labels = try write("l.csv", """
            Protein,Organism,Function
            A,human,1.1.1.5
            B,human,1.1.1.74
            C,yeast,"1.1.1.74, 2.7.1.125"
            D,yeast,3.1.1.1
            E,yeast,4.2.99.97
            """)
        let fasta = try write("s.fasta", ">A\nMKV\n>B\nMKL\n>C\nMKW\n>D\nMKA\n>E\nMKC\n")
        let spec = try write("cols.yaml", """
            name: cols
            inputs:
              fasta: [s.fasta]
              labels: [l.csv]
              id_column: protein
              ec_column: function
              enzyme_dat: \(fixture)
            """)
        let loaded = try PipelineSpec.load(path: spec)
        XCTAssertEqual(loaded.inputs.idColumn, "protein")
        XCTAssertEqual(loaded.inputs.ecColumn, "function")
        let db = dir.appendingPathComponent("cols.sqlite").path
        let ctx = try RunContext(spec: loaded, specPath: spec, db: try RunDatabase(path: db), quiet: true)
        _ = try PipelineRunner(context: ctx).run([.ingest])
        let database = try RunDatabase(path: db, readOnly: true)
        let seqs = Dictionary(uniqueKeysWithValues: try database.sequences().map { ($0.id, $0) })
        XCTAssertEqual(seqs.keys.sorted(), ["A", "C", "D"])
        XCTAssertEqual(seqs["A"]?.ecLabel, "1.-.-.-")
        XCTAssertEqual(seqs["A"]?.ecNumbers, ["1.1.1.-"])
        XCTAssertEqual(seqs["A"]?.notes, "EC 1.1.1.5 was transferred to 1.1.1.303 and 1.1.1.304 (enzyme.dat); label rewritten to their common part 1.1.1.-")
        XCTAssertEqual(seqs["C"]?.ecNumbers, ["2.7.11.14"])
        XCTAssertEqual(seqs["C"]?.notes, "EC 2.7.1.125 was transferred to 2.7.11.14 (enzyme.dat); label rewritten; deleted EC 1.1.1.74 dropped (enzyme.dat); kept 2.7.11.14")
        XCTAssertEqual(seqs["D"]?.notes, "")
        let rejected = try database.rejectedRecords()
        XCTAssertEqual(rejected.map(\.recordID), ["B", "E", "B", "E"])
        XCTAssertEqual(rejected.map(\.file), [labels, labels, fasta, fasta].map { ctx.resolve(($0 as NSString).lastPathComponent) })
        XCTAssertTrue(rejected[0].reason.hasPrefix("deleted EC: 1.1.1.74 is a deleted entry in enzyme.dat"), rejected[0].reason)
        XCTAssertTrue(rejected[1].reason.hasPrefix("transferred EC: 4.2.99.97 was transferred to 4.2.99.98 and 5.5.1.99"), rejected[1].reason)
        XCTAssertEqual(rejected[2].reason, "no EC label")
        let summary = try XCTUnwrap(ctx.ingestSummary)
        XCTAssertEqual(summary.files.map(\.read), [5, 5])
        XCTAssertEqual(summary.files.map(\.accepted), [3, 0])
        XCTAssertEqual(summary.files.map(\.joinedOrMerged), [0, 3])
        XCTAssertEqual(summary.files[1].rejectedByReason, ["deleted EC": 1, "transferred EC": 1])
        let params = try database.stage("ingest")!.parameters
        XCTAssertTrue(params.contains("inputs.id_column\tprotein") && params.contains("inputs.ec_column\tfunction"), params)

        // A column the file lacks is an error naming the file and its columns.
        let wrong = try write("wrong.yaml", "name: w\ninputs: {labels: [l.csv], id_column: accession}\n")
        let wctx = try RunContext(spec: try PipelineSpec.load(path: wrong), specPath: wrong,
                                  db: try RunDatabase(path: dir.appendingPathComponent("w.sqlite").path), quiet: true)
        XCTAssertThrowsError(try PipelineRunner(context: wctx).run([.ingest])) { error in
            XCTAssertEqual("\(error)", "unrecognised label-file header in '\(wctx.resolve("l.csv"))': 'Protein,Organism,Function'; no column named 'accession' (given by --id-column / inputs.id_column); columns seen: 'Protein', 'Organism', 'Function'; pass one of those names")
        }
    }

    func testSpecAndRequestValidation() throws {
        XCTAssertThrowsError(try PipelineSpec.parse(yaml: "name: a\ninputs: {labels: [x], id_column: ''}")) { error in
            XCTAssertEqual(error as? SpecError, .invalid(path: "inputs.id_column", message: "expected a non-empty name; omit the key to use the default"))
        }
        XCTAssertThrowsError(try PipelineSpec.parse(yaml: "name: a\ninputs: {labels: [x], id_column: EC_number, ec_column: ec number}")) { error in
            XCTAssertEqual(error as? SpecError, .invalid(path: "inputs.ec_column", message: "'ec number' is also the id_column; name two different columns"))
        }
        XCTAssertThrowsError(try IngestRequest(fasta: ["a.fasta"], labels: ["./a.fasta"], databasePath: "x.sqlite").spec()) { error in
            guard case .invalid(let path, let message)? = error as? SpecError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "--fasta/--labels/--enzyme-dat")
            XCTAssertTrue(message.hasSuffix("a.fasta is given twice; give each file once"), message)
        }
        XCTAssertThrowsError(try IngestRequest(fasta: [], labels: ["a"], labelLevel: 5, databasePath: "x.sqlite").spec())
        let built = try IngestRequest(fasta: ["a.fasta"], labels: ["/l.tsv"], idColumn: "acc", databasePath: "runs/my run.sqlite").spec()
        XCTAssertEqual(built.spec.name, "my run")
        XCTAssertEqual(built.spec.inputs.fasta, [FileManager.default.currentDirectoryPath + "/a.fasta"])
        XCTAssertEqual(built.spec.inputs.labels, ["/l.tsv"])
        XCTAssertEqual(built.spec.inputs.idColumn, "acc")
        // The recorded YAML is itself a valid spec with the same inputs.
        let reparsed = try PipelineSpec.parse(yaml: built.yaml)
        XCTAssertEqual(reparsed.inputs, built.spec.inputs)
        XCTAssertEqual(reparsed.labelLevel, 1)
    }

    /// The command line: summary on stdout, exit 0 with rejections, non-zero for an unreadable file.
    func testCommandLine() throws {
        guard let exe = EndToEndTests.executable() else { throw XCTSkip("kneuron executable not found next to the test bundle") }
        let fasta = try write("c.fasta", ">P1\nMKV\n>P2\nMKJ\n>P3 dup\nMKL\n>P3\nMKI\n")
        let labels = try write("c.tsv", "Entry\tEC number\nP1\t1.1.1.1\nP2\t2.7.1.1\nP3\t3.1.1.1\n")
        let db = dir.appendingPathComponent("cli.sqlite").path
        func run(_ args: [String]) throws -> (status: Int32, out: String, err: String) { try runProcess(exe, args) }
        let ok = try run(["ingest", "--fasta", fasta, "--labels", labels, "--db", db, "--quiet"])
        XCTAssertEqual(ok.status, 0, ok.err)
        XCTAssertTrue(ok.out.contains("total: 1 sequences accepted in 1 classes, 5 records rejected"), ok.out)
        XCTAssertTrue(ok.out.contains("    1 label for a rejected sequence"), ok.out)
        let cause = try RunDatabase(path: db, readOnly: true).rejectedRecords().first { $0.file == labels }
        XCTAssertEqual(cause?.recordID, "P2")
        XCTAssertEqual(cause?.reason, "label for a sequence rejected in \(fasta) line 3: unknown residue 'J' at position 3; allowed are the 20 standard amino acids and X B Z U O")
        XCTAssertTrue(ok.out.contains("    2 duplicate ID with a different sequence"), ok.out)
        XCTAssertTrue(ok.out.contains("    1 unknown residue"), ok.out)
        let again = try run(["ingest", "--fasta", fasta, "--labels", labels, "--db", db, "--quiet"])
        XCTAssertEqual(again.status, 0, again.err)
        XCTAssertTrue(again.out.hasPrefix("nothing to do: ingest is already recorded"), again.out)
        let missing = try run(["ingest", "--labels", dir.appendingPathComponent("nope.tsv").path, "--db", db + "2", "--quiet"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.err.contains("nope.tsv: no such file"), missing.err)
        let both = try run(["ingest", "spec.yaml", "--labels", labels])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.err.contains("give either a pipeline spec or --fasta"), both.err)
    }
}
