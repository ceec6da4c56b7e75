import Foundation
import XCTest
@testable import ProteinData

/// Seeded random byte mutations of real excerpts: the readers must not crash, and every
/// record (FASTA header line, label data row) must come out accepted or rejected.
final class FuzzTests: XCTestCase {
    static let interesting: [UInt8] = [0x00, 0xFF, 0xC3, 0xEF, 0xBB, 0xBF, 0x1F, 0x8B,
                                       UInt8(ascii: ">"), UInt8(ascii: "\r"), UInt8(ascii: "\n"),
                                       UInt8(ascii: "\t"), UInt8(ascii: ","), UInt8(ascii: "\""),
                                       UInt8(ascii: ";"), UInt8(ascii: "-"), UInt8(ascii: "."),
                                       UInt8(ascii: "*"), UInt8(ascii: " "), UInt8(ascii: "J"),
                                       UInt8(ascii: "n"), UInt8(ascii: "|")]

    func mutate(_ base: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var b = base
        let count = Int.random(in: 1...8, using: &rng)
        for _ in 0..<count {
            let pos = b.isEmpty ? 0 : Int.random(in: 0..<b.count, using: &rng)
            let byte = Bool.random(using: &rng) ? Self.interesting.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
            switch Int.random(in: 0..<3, using: &rng) {
            case 0 where !b.isEmpty: b[pos] = byte
            case 1: b.insert(byte, at: pos)
            default: if !b.isEmpty { b.remove(at: pos) }
            }
        }
        return b
    }

    func excerpt(_ path: String, lines: Int) throws -> [UInt8] {
        // Split on LF bytes (a Swift String would treat CRLF as one Character).
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        return Array(bytes.split(separator: 0x0A, omittingEmptySubsequences: false).prefix(lines)
            .joined(separator: [0x0A])) + [0x0A]
    }

    func testFastaMutations() throws {
        let base = try excerpt(try sharedData("swissprot-ec/swissprot-ec-7757.fasta"), lines: 60)
        var rng = SplitMix64(seed: 0x5EED_FA57A)
        var totalRecords = 0, totalRejected = 0
        for i in 0..<300 {
            let bytes = mutate(base, &rng)
            let result: (records: [FastaRecord], rejected: [RejectedRecord])
            do {
                result = try FastaReader.parse(data: Data(bytes), file: "fuzz\(i)")
            } catch let e as ProteinDataError {
                guard case .gzipCorrupt(let p, _, _) = e else { XCTFail("mutation \(i): \(e)"); continue }
                XCTAssertEqual(p, "fuzz\(i)")
                continue
            }
            let lines = simpleLines(bytes).map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \t\u{0B}\u{0C}")) }
            let headers = lines.filter { $0.hasPrefix(">") }.count
            let stray = result.rejected.filter { $0.reason.contains("first '>'") || $0.reason.contains("no '>' header") }.count
            XCTAssertEqual(result.records.count + result.rejected.count - stray, headers, "mutation \(i)")
            XCTAssertLessThanOrEqual(stray, 1)
            for r in result.records {
                XCTAssertFalse(r.sequence.isEmpty)
                XCTAssertNoThrow(try Tokenizer(maxLength: 1026, cropPolicy: .head).encode(r.sequence))
            }
            totalRecords += result.records.count
            totalRejected += result.rejected.count
        }
        // Mutations both keep and break records (base excerpt holds ~10 records).
        print("FASTA fuzz: \(totalRecords) records, \(totalRejected) rejected")
        XCTAssertGreaterThan(totalRecords, 1000)
        XCTAssertGreaterThan(totalRejected, 50)
    }

    func testLabelMutations() throws {
        let tsv = try excerpt(try sharedData("quirks/real-quirks.tsv"), lines: 15)
        let csv = try excerpt(try sharedData("quirks/bom-crlf-comma-multi-ec.csv"), lines: 12)
        var rng = SplitMix64(seed: 0x1ABE15)
        var headerErrors = 0, totalRecords = 0, totalRejected = 0
        for i in 0..<300 {
            let bytes = mutate(i % 2 == 0 ? tsv : csv, &rng)
            let result: (records: [LabelRecord], rejected: [RejectedRecord])
            do {
                result = try LabelFileReader.parse(data: Data(bytes), file: "fuzz\(i)")
            } catch let e as ProteinDataError {
                switch e {
                case .unrecognisedHeader, .gzipCorrupt: headerErrors += 1; continue
                default: XCTFail("unexpected \(e)"); continue
                }
            }
            let lines = simpleLines(bytes)
            let nonBlank = lines.filter { !$0.trimmingCharacters(in: CharacterSet(charactersIn: " \t\u{0B}\u{0C}")).isEmpty }
            XCTAssertEqual(result.records.count + result.rejected.count, nonBlank.count - 1, "mutation \(i)")
            for r in result.records {
                XCTAssertFalse(r.id.isEmpty)
                XCTAssertFalse(r.ecNumbers.isEmpty)
            }
            totalRecords += result.records.count
            totalRejected += result.rejected.count
        }
        print("label fuzz: \(totalRecords) records, \(totalRejected) rejected, \(headerErrors) header errors")
        XCTAssertLessThan(headerErrors, 150)
        XCTAssertGreaterThan(totalRecords, 2000)
        XCTAssertGreaterThan(totalRejected, 100)
    }

    /// Random byte mutations of random windows of every real FASTA and label file (quirk files
    /// included): `KNEURON_FUZZ_CASES` cases (default 400, as in CI; `scripts/fuzz.sh` runs
    /// 10,000), seed `KNEURON_FUZZ_SEED` (default 1). Each case must finish within 10 s (a hang
    /// fails the test and leaves the input in the temporary directory); every FASTA header
    /// line yields one record or one rejection, every label row one record or one rejection
    /// (or the whole file is refused with a header error), every rejection has a reason and a
    /// line, and every accepted sequence tokenizes. Before each case the input is written to
    /// `$TMPDIR/kneuron-fuzz-current.bin`, so a crash leaves the input that caused it.
    func testMutatedRealFiles() throws {
        let env = ProcessInfo.processInfo.environment
        let cases = env["KNEURON_FUZZ_CASES"].flatMap(Int.init) ?? 400
        let seed = env["KNEURON_FUZZ_SEED"].flatMap(UInt64.init) ?? 1
        let fastaFiles = try ["swissprot-ec/swissprot-ec-7757.fasta", "swissprot-ec/sample-train-840.fasta",
                              "swissprot-ec/sample-test-280.fasta"].map { try sharedData($0) }
        let labelFiles = try ["swissprot-ec/swissprot-ec-7757.ec.tsv", "swissprot-ec/swissprot-ec-7757.combined.tsv",
                              "swissprot-ec/sample-train-840.ec.tsv", "swissprot-ec/sample-test-280.ec.tsv",
                              "quirks/real-quirks.tsv", "quirks/bom-crlf-comma-multi-ec.csv"].map { try sharedData($0) }
        let contents = Dictionary(uniqueKeysWithValues: try (fastaFiles + labelFiles).map {
            ($0, [UInt8](try Data(contentsOf: URL(fileURLWithPath: $0))))
        })
        let current = FileManager.default.temporaryDirectory.appendingPathComponent("kneuron-fuzz-current.bin")
        let saveInputs = env["KNEURON_FUZZ_CASES"] != nil
        var rng = SplitMix64(seed: seed)
        var stats = (fastaCases: 0, labelCases: 0, records: 0, rejected: 0, headerErrors: 0, gzip: 0, bytes: 0)
        var reasons: [String: Int] = [:]
        var slowest = 0.0
        let tokenizer = Tokenizer(maxLength: 1026, cropPolicy: .head)

        /// A window of `bytes`: from a line start (a `>` line for FASTA) up to `maxLength` bytes,
        /// ending at a line end; label windows keep the header line in front.
        func window(_ bytes: [UInt8], fasta: Bool, maxLength: Int) -> [UInt8] {
            if bytes.count <= maxLength { return bytes }
            var start = Int.random(in: 0..<bytes.count, using: &rng)
            while start > 0 && bytes[start - 1] != 0x0A { start -= 1 }
            if fasta { while start > 0 && bytes[start] != UInt8(ascii: ">") { start -= 1; while start > 0 && bytes[start - 1] != 0x0A { start -= 1 } } }
            var end = min(bytes.count, start + Int.random(in: 1...maxLength, using: &rng))
            while end < bytes.count && bytes[end - 1] != 0x0A { end += 1 }
            let body = Array(bytes[start..<end])
            if fasta { return body }
            let headerEnd = (bytes.firstIndex(of: 0x0A) ?? bytes.count - 1) + 1
            return start < headerEnd ? body : Array(bytes[0..<headerEnd]) + body
        }

        /// The byte mutations plus, now and then, a structural one: a long residue line
        /// (100,000-200,000 letters), a truncation, or a copied block.
        func mutateMore(_ base: [UInt8]) -> [UInt8] {
            var b = mutate(base, &rng)
            switch Int.random(in: 0..<40, using: &rng) {
            case 0:
                let pos = b.isEmpty ? 0 : Int.random(in: 0..<b.count, using: &rng)
                let n = Int.random(in: 100_000...200_000, using: &rng)
                b.insert(contentsOf: [0x0A] + (0..<n).map { _ in Array("ACDEFGHIKLMNPQRSTVWYX".utf8).randomElement(using: &rng)! } + [0x0A], at: pos)
            case 1 where !b.isEmpty:
                b.removeLast(Int.random(in: 0..<b.count, using: &rng))
            case 2 where b.count > 2:
                let a = Int.random(in: 0..<b.count, using: &rng), c = Int.random(in: a..<b.count, using: &rng)
                b.insert(contentsOf: b[a..<c], at: Int.random(in: 0..<b.count, using: &rng))
            default: break
            }
            return b
        }

        for i in 0..<cases {
            let isFasta = i % 2 == 0
            let file = isFasta ? fastaFiles.randomElement(using: &rng)! : labelFiles.randomElement(using: &rng)!
            let bytes = mutateMore(window(contents[file]!, fasta: isFasta, maxLength: 16_384))
            stats.bytes += bytes.count
            if saveInputs { try Data(bytes).write(to: current) }
            let name = "fuzz\(i) (\((file as NSString).lastPathComponent))"
            let started = Date()
            let done = DispatchSemaphore(value: 0)
            nonisolated(unsafe) var outcome: Result<(records: Int, rejected: [RejectedRecord], sequences: [String]), Error>!
            DispatchQueue.global().async {
                outcome = Result {
                    if isFasta {
                        let r = try FastaReader.parse(data: Data(bytes), file: name)
                        return (r.records.count, r.rejected, r.records.map(\.sequence))
                    }
                    let r = try LabelFileReader.parse(data: Data(bytes), file: name)
                    XCTAssertTrue(r.records.allSatisfy { !$0.id.isEmpty && !$0.ecNumbers.isEmpty }, name)
                    return (r.records.count, r.rejected, r.records.compactMap(\.sequence).filter { !$0.isEmpty })
                }
                done.signal()
            }
            guard done.wait(timeout: .now() + 10) == .success else {
                let kept = FileManager.default.temporaryDirectory.appendingPathComponent("kneuron-fuzz-hang-\(seed)-\(i).bin")
                try Data(bytes).write(to: kept)
                return XCTFail("case \(i) (\(file)) did not finish within 10 s; input kept in \(kept.path)")
            }
            slowest = max(slowest, Date().timeIntervalSince(started))
            isFasta ? (stats.fastaCases += 1) : (stats.labelCases += 1)
            let result: (records: Int, rejected: [RejectedRecord], sequences: [String])
            do {
                result = try outcome.get()
            } catch let e as ProteinDataError {
                switch e {
                case .gzipCorrupt: stats.gzip += 1
                case .unrecognisedHeader where !isFasta: stats.headerErrors += 1
                default: XCTFail("case \(i): unexpected \(e)")
                }
                continue
            }
            let lines = simpleLines(bytes).map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \t\u{0B}\u{0C}")) }
            if isFasta {
                let headers = lines.filter { $0.hasPrefix(">") }.count
                let stray = result.rejected.filter { $0.reason.contains("first '>'") || $0.reason.contains("no '>' header") }.count
                XCTAssertEqual(result.records + result.rejected.count - stray, headers, "case \(i): a header line neither accepted nor rejected")
                XCTAssertLessThanOrEqual(stray, 1, "case \(i)")
            } else {
                XCTAssertEqual(result.records + result.rejected.count, lines.filter { !$0.isEmpty }.count - 1,
                               "case \(i): a label row neither accepted nor rejected")
            }
            for r in result.rejected {
                XCTAssertFalse(r.reason.isEmpty, "case \(i)")
                XCTAssertGreaterThan(r.line ?? 0, 0, "case \(i): rejection without a line")
                reasons[IngestKinds.kind(r.reason), default: 0] += 1
            }
            for s in result.sequences {
                XCTAssertFalse(s.isEmpty)
                XCTAssertNoThrow(try tokenizer.encode(s), "case \(i)")
            }
            stats.records += result.records
            stats.rejected += result.rejected.count
        }
        print("fuzz (seed \(seed)): \(cases) cases (\(stats.fastaCases) FASTA, \(stats.labelCases) label), \(stats.bytes) bytes; "
              + "\(stats.records) records accepted, \(stats.rejected) rejected with a reason, \(stats.headerErrors) label files refused "
              + "(header), \(stats.gzip) refused (gzip magic but not a valid gzip stream); slowest case \(String(format: "%.3f", slowest)) s; 0 crashes, 0 hangs")
        for (kind, n) in reasons.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }).prefix(12) { print("  \(n) \(kind)") }
        XCTAssertEqual(stats.fastaCases + stats.labelCases, cases)
        XCTAssertGreaterThan(stats.records, cases, "mutated windows should still hold many good records")
        XCTAssertGreaterThan(stats.rejected, cases / 10, "mutations should break records")
        if saveInputs { try? FileManager.default.removeItem(at: current) }
    }
}

/// Groups rejection reasons for the fuzz report (the same rule as the pipeline's summary).
enum IngestKinds {
    static func kind(_ reason: String) -> String {
        for prefix in ["sequence column: ", "tokenize: "] where reason.hasPrefix(prefix) {
            return prefix + Self.kind(String(reason.dropFirst(prefix.count)))
        }
        var kind = reason
        if let cut = kind.firstIndex(where: { $0 == ":" || $0 == "(" || $0 == ";" }) { kind = String(kind[..<cut]) }
        for marker in [" '", " at position", " byte 0x"] {
            if let r = kind.range(of: marker), kind[..<r.lowerBound].split(separator: " ").count >= 2 { kind = String(kind[..<r.lowerBound]) }
        }
        return kind.trimmingCharacters(in: .whitespaces)
    }
}
