import ESM
import Foundation
import ProteinData
import Store

/// A PROSITE-like sequence pattern (Sigrist et al. 2002, PROSITE pattern syntax): one element
/// per residue, each a set of allowed amino acids or `x` (any). Written as in PROSITE, elements
/// joined by `-`: `W-C-x-H-[FY]-W`.
public struct MotifPattern: Sendable, Equatable, CustomStringConvertible {
    /// Allowed residues per position; nil = `x` (any residue).
    public let elements: [Set<Character>?]

    /// Parses PROSITE syntax: single residues, `[ABC]` alternatives, `x`, `x(n)`; joined by `-`.
    /// - Throws: `ProteinDataError.malformedFile` naming the pattern when it does not parse.
    public init(_ text: String) throws {
        var out: [Set<Character>?] = []
        for raw in text.split(separator: "-", omittingEmptySubsequences: false) {
            let e = raw.trimmingCharacters(in: .whitespaces)
            if e == "x" { out.append(nil); continue }
            if e.hasPrefix("x("), e.hasSuffix(")"), let n = Int(e.dropFirst(2).dropLast()), n > 0 {
                out += [Set<Character>?](repeating: nil, count: n); continue
            }
            if e.hasPrefix("["), e.hasSuffix("]"), e.count > 2 {
                let set = Set(e.dropFirst().dropLast())
                guard set.isSubset(of: PlantedDataset.standardResidues) else { throw Self.bad(text) }
                out.append(set); continue
            }
            guard e.count == 1, let c = e.first, PlantedDataset.standardResidues.contains(c) else { throw Self.bad(text) }
            out.append([c])
        }
        guard !out.isEmpty else { throw Self.bad(text) }
        elements = out
    }

    private static func bad(_ text: String) -> ProteinDataError {
        .malformedFile(path: "motif pattern '\(text)'", reason: "expected PROSITE syntax over the 20 standard residues, e.g. W-C-x-H-[FY]-W")
    }

    /// Number of residues it spans.
    public var count: Int { elements.count }

    /// PROSITE text (`x` runs written one by one, alternatives sorted).
    public var description: String {
        elements.map { e in e.map { $0.count == 1 ? String($0.first!) : "[" + String($0.sorted()) + "]" } ?? "x" }.joined(separator: "-")
    }

    /// Whether `residues[start ..< start + count]` matches.
    public func matches(_ residues: [Character], at start: Int) -> Bool {
        guard start >= 0, start + count <= residues.count else { return false }
        for (i, e) in elements.enumerated() { if let e, !e.contains(residues[start + i]) { return false } }
        return true
    }

    /// Every start at which `residues` matches.
    public func occurrences(in residues: [Character]) -> [Int] {
        residues.count >= count ? (0 ... residues.count - count).filter { matches(residues, at: $0) } : []
    }
}

/// A planted-knowledge benchmark built from real protein sequences: K classes, each defined by
/// its own motif written into every sequence of the class at a random position, and decoy
/// motifs in every sequence regardless of class. The class is then a function of the motif
/// alone, so a model that learns the task must detect it, and the neurons that hold that
/// knowledge are known: those that fire on the motif's residues. Everything is a function of
/// the inputs and the seed (`SplitMix64`), so the files are reproducible byte for byte.
public struct PlantedDataset: Sendable {
    /// The 20 standard amino acids.
    public static let standardResidues: Set<Character> = Set("ACDEFGHIKLMNPQRSTVWY")

    /// Class motifs, in class order (class k uses the k-th): 8 residues with one variable
    /// position, each class built from its own pair of residues (W/C, H/M, Y/Q, F/P, N/K, D/E,
    /// I/V, R/S), so a class is told by a local pattern of residues that no other class's motif
    /// or decoy uses. Real sequences that already match a motif are left out (`naturalMatches`).
    public static let classMotifs = ["W-C-W-x-C-W-W-C", "H-M-H-M-x-H-M-H", "Y-Y-Q-Y-x-Q-Y-Y", "F-P-F-F-x-P-F-F", "N-N-K-N-x-N-K-N",
                                     "D-E-D-D-x-E-D-E", "I-V-I-I-x-V-I-V", "R-S-R-R-x-S-R-S"]
    /// Decoy motifs: planted into sequences of every class (so they carry no class information),
    /// made of residues (G, A, T, L) that no class motif uses.
    public static let decoyMotifs = ["G-x-G-G-x-G-A", "A-T-A-x-T-A-T", "L-G-L-x-L-G-L"]

    /// What to build.
    public struct Recipe: Sendable, Equatable {
        /// Classes, 2 ... `classMotifs.count`.
        public var classes = 5
        /// Sequences per class.
        public var perClass = 600
        /// Decoy motifs per sequence (each drawn from `decoyMotifs`).
        public var decoys = 2
        /// Residues per planted sequence: a random window of this length of each source sequence
        /// (sources shorter than it are not used). Short windows make the motif a larger share of
        /// the sequence; a model needs `max_length` >= length + 2 so that no motif is cropped away.
        public var length = 100
        /// Seed of every random choice.
        public var seed: UInt64 = 1
        /// Creates the default recipe (5 classes x 600 sequences of 100 residues, 2 decoys, seed 1).
        public init() {}
    }

    /// One planted motif.
    public struct Site: Sendable, Equatable {
        /// The sequence's ID.
        public var sequenceID: String
        /// 1-based first residue and last residue (inclusive), as in UniProt and PROSITE.
        public var start: Int, end: Int
        /// The residues written there.
        public var residues: String
        /// Its pattern (PROSITE syntax).
        public var pattern: String
        /// The class label it defines (`k.-.-.-`), or nil for a decoy.
        public var label: String?
    }

    /// The sequences (ID, residues, class label `k.-.-.-`, 1-based first residue of the window
    /// in the source sequence), in output order.
    public var sequences: [(id: String, residues: String, label: String, sourceStart: Int)]
    /// Every planted motif, class motif first, per sequence in output order.
    public var sites: [Site]
    /// Windows that carried a class or decoy motif by nature before planting (not used).
    public var naturalMatches: Int
    /// Source sequences available after the filters (length, residues, repeats).
    public var candidates: Int

    /// Builds the benchmark from `records` (typically a FASTA file's): keeps sequences of at
    /// least `recipe.length` residues, all of the 20 standard amino acids, drops repeated IDs and
    /// repeated sequences (first kept), orders them by ID and shuffles them with the seed; then, in
    /// that order, cuts a random window of `length` residues from each, skips a window that already
    /// matches a motif, and takes `classes x perClass` (classes interleaved). Class k's sequences
    /// get motif k at a uniform random start and `decoys` decoys at random places that overlap no
    /// other motif (an `x` position keeps the sequence's own residue).
    /// - Throws: `ProteinDataError.malformedFile` when the recipe is invalid or there are too few sequences.
    public init(records: [FastaRecord], recipe: Recipe) throws {
        func invalid(_ reason: String) -> ProteinDataError { .malformedFile(path: "planted recipe", reason: reason) }
        guard (2 ... Self.classMotifs.count).contains(recipe.classes) else { throw invalid("classes must be 2 ... \(Self.classMotifs.count), got \(recipe.classes)") }
        guard (1 ... 1_000_000).contains(recipe.perClass), (0 ... 4).contains(recipe.decoys) else {
            throw invalid("per-class must be 1 ... 1,000,000 and decoys 0 ... 4, got \(recipe.perClass) and \(recipe.decoys)")
        }
        let motifs = try Self.classMotifs.prefix(recipe.classes).map(MotifPattern.init)
        let decoys = try Self.decoyMotifs.map(MotifPattern.init)
        let longest = (motifs + decoys).map(\.count).max()!
        guard recipe.length >= (recipe.decoys + 2) * longest else {
            throw invalid("length \(recipe.length): a sequence must hold the motif and \(recipe.decoys) decoys with room to spare "
                + "(length >= \((recipe.decoys + 2) * longest))")
        }
        var seenIDs = Set<String>(), seenSequences = Set<String>()
        var pool: [(id: String, residues: [Character])] = []
        var natural = 0
        for r in records.sorted(by: { $0.id < $1.id }) {
            let residues = Array(r.sequence.uppercased())
            guard residues.count >= recipe.length, residues.allSatisfy(Self.standardResidues.contains),
                  seenIDs.insert(r.id).inserted, seenSequences.insert(r.sequence.uppercased()).inserted else { continue }
            pool.append((r.id, residues))
        }
        var rng = SplitMix64(seed: recipe.seed)
        rng.shuffle(&pool)
        let candidates = pool.count
        // Windows, in the shuffled order; a window that matches a motif by nature is skipped.
        var windows: [(id: String, residues: [Character], start: Int)] = []
        for p in pool {
            let start = rng.nextIndex(below: p.residues.count - recipe.length + 1)
            let window = Array(p.residues[start ..< start + recipe.length])
            if (motifs + decoys).contains(where: { !$0.occurrences(in: window).isEmpty }) { natural += 1; continue }
            windows.append((p.id, window, start + 1))
            if windows.count == recipe.classes * recipe.perClass { break }
        }
        let needed = recipe.classes * recipe.perClass
        guard windows.count == needed else {
            throw invalid("\(windows.count) usable sequences of at least \(recipe.length) standard residues, \(needed) needed "
                + "(\(recipe.classes) classes x \(recipe.perClass)); give more FASTA records, a shorter --length or a lower --per-class")
        }
        var sequences: [(id: String, residues: String, label: String, sourceStart: Int)] = []
        var sites: [Site] = []
        let chosen = windows.map { (id: $0.id, residues: $0.residues) }
        for i in 0 ..< needed {
            let k = i % recipe.classes   // classes interleaved, so every prefix is balanced
            var residues = chosen[i].residues
            var placed: [Site] = []
            // A placement that made another class's motif by accident (its x positions or a neighbour
            // completing one) is drawn again, so that a sequence carries exactly its own class motif.
            // A draw that found no free place for a motif is drawn again too.
            for attempt in 0 ... 100 {
                guard attempt < 100 else {
                    throw invalid("could not place the class motif and \(recipe.decoys) decoys in \(chosen[i].id) without overlaps or another class's "
                        + "motif in 100 draws; give a longer --length or fewer --decoys")
                }
                residues = chosen[i].residues
                guard let p = plant(&residues, id: chosen[i].id, motif: motifs[k], label: "\(k + 1).-.-.-") else { continue }
                placed = p
                if !motifs.indices.contains(where: { $0 != k && !motifs[$0].occurrences(in: residues).isEmpty }) { break }
            }
            sequences.append((chosen[i].id, String(residues), "\(k + 1).-.-.-", windows[i].start))
            sites += placed
        }
        func plant(_ residues: inout [Character], id: String, motif: MotifPattern, label: String) -> [Site]? {
            let chosen = [(motif, label as String?)] + (0 ..< recipe.decoys).map { _ in (decoys[rng.nextIndex(below: decoys.count)], nil as String?) }
            var taken: [Range<Int>] = []
            var placed: [Site] = []
            for (pattern, label) in chosen {
                var start = 0, tries = 0
                repeat {
                    start = rng.nextIndex(below: residues.count - pattern.count + 1)
                    tries += 1
                } while taken.contains(where: { $0.overlaps(start ..< start + pattern.count) }) && tries < 10_000
                guard tries < 10_000 else { return nil }
                taken.append(start ..< start + pattern.count)
                for (j, e) in pattern.elements.enumerated() {
                    if let e, !e.contains(residues[start + j]) { residues[start + j] = e.sorted()[rng.nextIndex(below: e.count)] }
                }
                placed.append(Site(sequenceID: id, start: start + 1, end: start + pattern.count,
                                   residues: String(residues[start ..< start + pattern.count]), pattern: pattern.description, label: label))
            }
            return placed
        }
        self.sequences = sequences
        self.sites = sites
        naturalMatches = natural
        self.candidates = candidates
    }

    /// FASTA text: `>ID planted class k, residues a-b of the source` headers, residues wrapped at 60 columns.
    public var fasta: String {
        var out = ""
        for s in sequences {
            out += ">\(s.id) planted class \(s.label), residues \(s.sourceStart)-\(s.sourceStart + s.residues.count - 1) of the source\n"
            var rest = Substring(s.residues)
            while !rest.isEmpty { out += rest.prefix(60) + "\n"; rest = rest.dropFirst(60) }
        }
        return out
    }

    /// Label table in UniProt TSV style (`Entry<TAB>EC number`): class k is `k.-.-.-`.
    public var labels: String {
        sequences.reduce(into: "Entry\tEC number\n") { $0 += "\($1.id)\t\($1.label)\n" }
    }

    /// Motif table: `sequence_id, start, end, residues, pattern, label, decoy` (1-based inclusive
    /// positions; label empty and decoy 1 for decoys).
    public var motifTable: String {
        sites.reduce(into: "sequence_id\tstart\tend\tresidues\tpattern\tlabel\tdecoy\n") {
            $0 += "\($1.sequenceID)\t\($1.start)\t\($1.end)\t\($1.residues)\t\($1.pattern)\t\($1.label ?? "")\t\($1.label == nil ? 1 : 0)\n"
        }
    }
}

extension PlantedDataset {
    /// What `write` produced.
    public struct Written: Sendable {
        /// The files written, in order: FASTA, labels, motif table, recipe (JSON).
        public var files: [String]
        /// The dataset.
        public var dataset: PlantedDataset
    }

    /// The recipe and the outcome as a JSON document (sorted keys): what `kneuron plant` records
    /// beside the data, so that a benchmark can be rebuilt and checked.
    struct RecipeFile: Codable {
        var classes: Int, perClass: Int, decoys: Int, length: Int, seed: UInt64
        var classMotifs: [String: String]
        var decoyMotifs: [String]
        var sources: [[String: String]]
        var sequences: Int, candidates: Int, naturalMatches: Int
    }

    /// Reads the FASTA files, builds the benchmark and writes into `directory` (created when
    /// missing): `planted.fasta`, `planted.ec.tsv` (labels), `planted.motifs.tsv` and
    /// `planted.json` (the recipe, the sources' SHA-256 and the counts).
    /// - Throws: `ProteinDataError` for unreadable input or an impossible recipe;
    ///   `PipelineError.unwritableOutput` when the directory cannot be written or an output file is an input.
    public static func write(fasta paths: [String], recipe: Recipe, to directory: String) throws -> Written {
        // Never overwrite an input: an output file that is one of the FASTA files is refused.
        func resolved(_ p: String) -> String { URL(fileURLWithPath: p).resolvingSymlinksInPath().standardizedFileURL.path }
        let inputs = Set(paths.map(resolved))
        for name in ["planted.fasta", "planted.ec.tsv", "planted.motifs.tsv", "planted.json"] {
            let out = (directory as NSString).appendingPathComponent(name)
            if inputs.contains(resolved(out)) {
                throw PipelineError.unwritableOutput(path: out, reason: "it is one of the --fasta inputs and would be overwritten; give another --out directory")
            }
        }
        var records: [FastaRecord] = []
        var sources: [[String: String]] = []
        for p in paths {
            records += try FastaReader.read(path: p).records
            let h = try Hashing.sha256(file: p)
            sources.append(["path": (p as NSString).lastPathComponent, "sha256": h.hex, "bytes": String(h.size)])
        }
        let dataset = try PlantedDataset(records: records, recipe: recipe)
        let json = RecipeFile(classes: recipe.classes, perClass: recipe.perClass, decoys: recipe.decoys, length: recipe.length, seed: recipe.seed,
                              classMotifs: Dictionary(uniqueKeysWithValues: classMotifs.prefix(recipe.classes).enumerated().map { ("\($0 + 1).-.-.-", $1) }),
                              decoyMotifs: decoyMotifs, sources: sources, sequences: dataset.sequences.count, candidates: dataset.candidates,
                              naturalMatches: dataset.naturalMatches)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let texts = [("planted.fasta", dataset.fasta), ("planted.ec.tsv", dataset.labels), ("planted.motifs.tsv", dataset.motifTable),
                     ("planted.json", String(decoding: try encoder.encode(json), as: UTF8.self) + "\n")]
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw PipelineError.unwritableOutput(path: directory, reason: "cannot create the output directory (\(error.localizedDescription)); give another --out")
        }
        var files: [String] = []
        for (name, text) in texts {
            let path = (directory as NSString).appendingPathComponent(name)
            do { try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
                throw PipelineError.unwritableOutput(path: path, reason: "\(error.localizedDescription); give another --out")
            }
            files.append(path)
        }
        return Written(files: files, dataset: dataset)
    }
}

extension PlantedDataset {
    /// Reads a motif table written by `kneuron plant` (`planted.motifs.tsv`) and checks every row
    /// against the ingested sequences: the sequence exists, 1 <= start <= end <= its length, the
    /// residues are those at start ... end, the pattern parses and matches them, the label is one
    /// of the run's classes (empty with decoy 1 for a decoy), and each sequence has exactly one
    /// class motif, of its own class.
    /// - Parameters:
    ///   - sequences: ID -> (residues, class label) of the accepted sequences.
    /// - Throws: `ProteinDataError.malformedFile` naming the file, the line and what to do.
    public static func readMotifTable(path: String, sequences: [String: (residues: String, label: String)]) throws -> [PlantedMotifRecord] {
        // Gzip, a BOM and CRLF line ends are accepted (TextLines); blank lines are skipped.
        let lines = try TextLines.read(path: path).filter { !$0.text.trimmingCharacters(in: .whitespaces).isEmpty }
        let header = "sequence_id\tstart\tend\tresidues\tpattern\tlabel\tdecoy"
        guard let first = lines.first else { throw ProteinDataError.malformedFile(path: path, reason: "the file is empty; give the planted.motifs.tsv that kneuron plant wrote") }
        guard first.text == header else {
            throw ProteinDataError.malformedFile(path: path, reason: "line \(first.number) must be the header '\(header.replacingOccurrences(of: "\t", with: "<TAB>"))' "
                + "(kneuron plant's planted.motifs.tsv), found '\(first.text.replacingOccurrences(of: "\t", with: "<TAB>"))'")
        }
        var out: [PlantedMotifRecord] = []
        var classMotifs: [String: Int] = [:]
        var patternOf: [String: String] = [:]       // class label -> its motif (one per class)
        var taken: [String: [ClosedRange<Int>]] = [:]  // sequence -> planted ranges
        for (number, line) in lines.dropFirst() {
            func bad(_ reason: String) -> ProteinDataError { .malformedFile(path: path, reason: "line \(number): \(reason)") }
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 7, let start = Int(f[1]), let end = Int(f[2]), let decoy = Int(f[6]), decoy == 0 || decoy == 1 else {
                throw bad("expected 7 tab-separated fields (sequence_id, start, end, residues, pattern, label, decoy 0 or 1)")
            }
            guard let s = sequences[f[0]] else { throw bad("sequence \(f[0]) is not among the ingested sequences (was it rejected? see rejected_records)") }
            let residues = Array(s.residues)
            guard start >= 1, end >= start, end <= residues.count else { throw bad("positions \(start)-\(end) lie outside \(f[0]) (\(residues.count) residues)") }
            guard String(residues[(start - 1) ..< end]) == f[3] else {
                throw bad("\(f[0]) has \(String(residues[(start - 1) ..< end])) at \(start)-\(end), the table says \(f[3]): the table belongs to another FASTA file")
            }
            let pattern: MotifPattern
            do { pattern = try MotifPattern(f[4]) } catch { throw bad("pattern '\(f[4])' is not PROSITE syntax") }
            guard pattern.count == end - start + 1, pattern.matches(residues, at: start - 1) else { throw bad("pattern \(f[4]) does not match \(f[3])") }
            if let other = taken[f[0]]?.first(where: { $0.overlaps(start ... end) }) {
                throw bad("\(f[0]) \(start)-\(end) overlaps its motif at \(other.lowerBound)-\(other.upperBound): planted motifs never overlap")
            }
            taken[f[0], default: []].append(start ... end)
            if decoy == 1 {
                guard f[5].isEmpty else { throw bad("a decoy has no label; found \(f[5])") }
            } else {
                guard f[5] == s.label else { throw bad("the motif's label \(f[5]) is not the sequence's class \(s.label)") }
                if let known = patternOf[f[5]], known != f[4] { throw bad("class \(f[5]) has motif \(known) on earlier lines, \(f[4]) here: one motif per class") }
                if let owner = patternOf.first(where: { $0.value == f[4] && $0.key != f[5] }) { throw bad("motif \(f[4]) is already class \(owner.key)'s") }
                patternOf[f[5]] = f[4]
                classMotifs[f[0], default: 0] += 1
            }
            out.append(PlantedMotifRecord(sequenceID: f[0], start: start, end: end, residues: f[3], pattern: f[4], ecLabel: decoy == 1 ? nil : f[5]))
        }
        if let id = sequences.keys.sorted().first(where: { classMotifs[$0] != 1 }) {
            throw ProteinDataError.malformedFile(path: path, reason: "sequence \(id) has \(classMotifs[id] ?? 0) class motifs in the table, 1 expected "
                + "(every ingested sequence must come from the same kneuron plant run)")
        }
        return out
    }
}
