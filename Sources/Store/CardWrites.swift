import Foundation
import GRDB

/// A neuron of the six linear maps at the database boundary: block, `LinearModule` raw value, unit.
public struct NeuronKey: Hashable, Sendable, Comparable, Codable {
    public var layer: Int
    public var module: String
    public var unit: Int
    /// Creates a key from its fields.
    public init(layer: Int, module: String, unit: Int) { self.layer = layer; self.module = module; self.unit = unit }
    /// By layer, module name, unit (the store's order; `NeuronUnit` orders modules canonically).
    public static func < (a: NeuronKey, b: NeuronKey) -> Bool { (a.layer, a.module, a.unit) < (b.layer, b.module, b.unit) }
}

/// One card of a ranking (table `card_neurons`).
public struct CardNeuronRecord: Sendable, Equatable {
    /// The ranking (seed 0).
    public var ranking: RankingID
    /// 1 = the ranking's first card.
    public var cardRank: Int
    public var neuron: NeuronKey
    /// Rank of the neuron in the ranking, or of its best weight (weight rankings).
    public var bestRank: Int
    /// Creates a record from its fields.
    public init(ranking: RankingID, cardRank: Int, neuron: NeuronKey, bestRank: Int) {
        self.ranking = ranking; self.cardRank = cardRank; self.neuron = neuron; self.bestRank = bestRank
    }
}

/// Everything a neuron card shows (tables `neuron_profiles`, `neuron_examples`,
/// `neuron_enrichment`, `neuron_positions`, `neuron_classes`, `neuron_subclasses`; their
/// columns are documented in migration 0013).
public struct NeuronCardRecord: Sendable, Equatable, Codable {
    /// One example window (`neuron_examples`).
    public struct Example: Sendable, Equatable, Codable {
        /// `top` or `quantile`.
        public var kind: String
        public var rank: Int
        public var quantile: Double?
        public var sequenceID: String, ecLabel: String
        /// 1-based residue of the peak in the original sequence.
        public var peakPosition: Int
        public var activation: Double
        /// Residues peak-7 ... peak+7 that exist, and the 1-based position of the first.
        public var window: String, windowStart: Int
        /// The planted motif holding the peak residue, and whether it is a decoy (planted runs).
        public var motifPattern: String?, motifIsDecoy: Bool?
        /// Creates an example from its fields.
        public init(kind: String, rank: Int, quantile: Double?, sequenceID: String, ecLabel: String, peakPosition: Int, activation: Double,
                    window: String, windowStart: Int, motifPattern: String?, motifIsDecoy: Bool?) {
            self.kind = kind; self.rank = rank; self.quantile = quantile; self.sequenceID = sequenceID; self.ecLabel = ecLabel
            self.peakPosition = peakPosition; self.activation = activation; self.window = window; self.windowStart = windowStart
            self.motifPattern = motifPattern; self.motifIsDecoy = motifIsDecoy
        }
    }
    /// One residue-enrichment row (`neuron_enrichment`).
    public struct Enrichment: Sendable, Equatable, Codable {
        public var offset: Int, residue: String, count: Int, n: Int
        public var background: Double, logOdds: Double, pValue: Double, qValue: Double
        /// Creates a row from its fields.
        public init(offset: Int, residue: String, count: Int, n: Int, background: Double, logOdds: Double, pValue: Double, qValue: Double) {
            self.offset = offset; self.residue = residue; self.count = count; self.n = n
            self.background = background; self.logOdds = logOdds; self.pValue = pValue; self.qValue = qValue
        }
    }
    /// One class row (`neuron_classes`).
    public struct ClassProfile: Sendable, Equatable, Codable {
        public var classIndex: Int, nSequences: Int, peakMean: Double, peakSD: Double
        public var auroc: Double?
        public var topCount: Int
        /// Creates a row from its fields.
        public init(classIndex: Int, nSequences: Int, peakMean: Double, peakSD: Double, auroc: Double?, topCount: Int) {
            self.classIndex = classIndex; self.nSequences = nSequences; self.peakMean = peakMean; self.peakSD = peakSD
            self.auroc = auroc; self.topCount = topCount
        }
    }
    /// One EC number among the top sequences (`neuron_subclasses`).
    public struct Subclass: Sendable, Equatable, Codable {
        public var level: Int, ecNumber: String, topCount: Int, splitCount: Int
        /// Creates a row from its fields.
        public init(level: Int, ecNumber: String, topCount: Int, splitCount: Int) {
            self.level = level; self.ecNumber = ecNumber; self.topCount = topCount; self.splitCount = splitCount
        }
    }

    public var neuron: NeuronKey
    /// Order of the neuron in `card_shards.peaks`.
    public var cardIndex: Int
    public var split: String
    public var nSequences: Int, nTop: Int
    public var peakMax: Double, peakMean: Double, peakSD: Double
    public var nTerminalShare: Double, cTerminalShare: Double
    public var bestClass: Int?, bestAUROC: Double?
    public var topClassEntropy: Double, topClassEntropyMax: Double
    public var examples: [Example] = []
    public var enrichment: [Enrichment] = []
    /// Counts of the top sequences' peaks in ten bins of relative position.
    public var positionBins: [Int] = []
    public var classes: [ClassProfile] = []
    public var subclasses: [Subclass] = []

    /// Creates a card from its profile fields (the lists start empty).
    public init(neuron: NeuronKey, cardIndex: Int, split: String, nSequences: Int, nTop: Int, peakMax: Double, peakMean: Double, peakSD: Double,
                nTerminalShare: Double, cTerminalShare: Double, bestClass: Int?, bestAUROC: Double?, topClassEntropy: Double, topClassEntropyMax: Double) {
        self.neuron = neuron; self.cardIndex = cardIndex; self.split = split; self.nSequences = nSequences; self.nTop = nTop
        self.peakMax = peakMax; self.peakMean = peakMean; self.peakSD = peakSD
        self.nTerminalShare = nTerminalShare; self.cTerminalShare = cTerminalShare; self.bestClass = bestClass; self.bestAUROC = bestAUROC
        self.topClassEntropy = topClassEntropy; self.topClassEntropyMax = topClassEntropyMax
    }
}

/// One finished shard of the cards stage's activation pass (table `card_shards`).
public struct CardShardRecord: Sendable, Equatable {
    public var shardIndex: Int
    public var contentKey: String
    public var nSequences: Int
    /// Neuron by neuron (card order), one (peak activation, peak residue) pair per sequence.
    public var activations: [Float], residues: [Int32]
    public var seconds: Double
    /// Creates a record from its fields.
    public init(shardIndex: Int, contentKey: String, nSequences: Int, activations: [Float], residues: [Int32], seconds: Double) {
        self.shardIndex = shardIndex; self.contentKey = contentKey; self.nSequences = nSequences
        self.activations = activations; self.residues = residues; self.seconds = seconds
    }
}

/// A control neuron of the cards stage and where its top windows peak (table `card_controls`,
/// with `card_control_classes`).
public struct CardControlRecord: Sendable, Equatable {
    public var neuron: NeuronKey
    /// Its index in `card_shards.peaks`.
    public var cardIndex: Int
    /// Top windows (`cards.examples`, fewer when the split is smaller), and how many peak inside a
    /// planted class motif and inside a decoy.
    public var windows: Int, classMotifWindows: Int, decoyWindows: Int
    /// Class index -> windows peaking inside that class's motif (classes with none left out).
    public var classWindows: [Int: Int]
    /// Creates a record from its fields.
    public init(neuron: NeuronKey, cardIndex: Int, windows: Int, classMotifWindows: Int, decoyWindows: Int, classWindows: [Int: Int]) {
        self.neuron = neuron; self.cardIndex = cardIndex; self.windows = windows
        self.classMotifWindows = classMotifWindows; self.decoyWindows = decoyWindows; self.classWindows = classWindows
    }
}

/// A ranking's card motif overlap against random control neurons (table `card_motif_tests`).
public struct CardMotifTestRecord: Sendable, Equatable {
    public var ranking: RankingID
    /// `class`, `own_class` or `decoy` (the pipeline's `CardMotif`).
    public var motif: String
    public var nNeurons: Int
    /// Mean over the ranking's card neurons of the share of their top windows peaking in the motif.
    public var share: Double
    /// The random sets' mean and sd of the same statistic, how many, and the one-sided p-value.
    public var randomMean: Double, randomSD: Double, nRandom: Int, pValue: Double
    /// Creates a record from its fields.
    public init(ranking: RankingID, motif: String, nNeurons: Int, share: Double, randomMean: Double, randomSD: Double, nRandom: Int, pValue: Double) {
        self.ranking = ranking; self.motif = motif; self.nNeurons = nNeurons; self.share = share
        self.randomMean = randomMean; self.randomSD = randomSD; self.nRandom = nRandom; self.pValue = pValue
    }
}

extension RunDatabase {
    // MARK: cards

    /// Deletes the finished card shards whose content key is not `key` (another model or other
    /// parameters). Returns how many were deleted.
    public func discardCardShards(otherThan key: String) throws -> Int {
        try write("discarding stale card shards") { db in
            try db.execute(sql: "DELETE FROM card_shards WHERE content_key != ?", arguments: [key])
            return db.changesCount
        }
    }

    /// The finished card shards' indices.
    public func cardShardIndices() throws -> Set<Int> {
        try read("reading card shards") { db in Set(try Int.fetchAll(db, sql: "SELECT shard_index FROM card_shards")) }
    }

    /// Finished card shards (any content key) and their seconds.
    public func cardShardProgress() throws -> (done: Int, seconds: Double) {
        try read("reading card shards") { db in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*), COALESCE(SUM(seconds), 0) FROM card_shards")!
            return (row[0], row[1])
        }
    }

    /// Commits one finished shard (its own transaction: a kill after it keeps the shard).
    public func commitCardShard(_ s: CardShardRecord) throws {
        precondition(s.activations.count == s.residues.count, "one residue per peak")
        var blob = Data(capacity: s.activations.count * 8)
        for (a, r) in zip(s.activations, s.residues) {
            withUnsafeBytes(of: a.bitPattern.littleEndian) { blob.append(contentsOf: $0) }
            withUnsafeBytes(of: r.littleEndian) { blob.append(contentsOf: $0) }
        }
        try write("writing card shard \(s.shardIndex)") { db in
            try db.execute(sql: "INSERT OR REPLACE INTO card_shards (shard_index, content_key, n_sequences, peaks, seconds) VALUES (?, ?, ?, ?, ?)",
                           arguments: [s.shardIndex, s.contentKey, s.nSequences, blob, s.seconds])
        }
    }

    /// Every finished card shard, by index.
    /// - Throws: `StoreError.corrupt` for a blob whose size is not a multiple of 8.
    public func cardShards() throws -> [CardShardRecord] {
        try read("reading card shards") { db in
            try Row.fetchAll(db, sql: "SELECT shard_index, content_key, n_sequences, peaks, seconds FROM card_shards ORDER BY shard_index").map { row in
                let index: Int = row[0]
                let words = try Blob.unpack(row[3] as Data, as: UInt32.self)
                guard words.count % 2 == 0 else { throw StoreError.corrupt("card shard \(index): odd number of 32-bit words; run with --force cards") }
                let activations = stride(from: 0, to: words.count, by: 2).map { Float(bitPattern: words[$0]) }
                let residues = stride(from: 1, to: words.count, by: 2).map { Int32(bitPattern: words[$0]) }
                return CardShardRecord(shardIndex: index, contentKey: row[1], nSequences: row[2], activations: activations, residues: residues, seconds: row[4])
            }
        }
    }

    /// Writes the cards stage's card list, cards, control neurons, motif tests and ledger row in one
    /// transaction, replacing every row an earlier cards stage wrote (its shards stay).
    public func commitCards(neurons: [CardNeuronRecord], cards: [NeuronCardRecord], controls: [CardControlRecord] = [],
                            motifTests: [CardMotifTestRecord] = [], ledger: StageRecord) throws {
        try write("writing the cards stage") { db in
            // A stage redone without --force (a migration asked for it) replaces what it wrote before.
            for table in ["card_motif_tests", "card_control_classes", "card_controls", "neuron_subclasses", "neuron_classes", "neuron_positions",
                          "neuron_enrichment", "neuron_examples", "neuron_profiles", "card_neurons"] {
                try db.execute(sql: "DELETE FROM \(table)")
            }
            for c in controls {
                let k = c.neuron
                try db.execute(sql: """
                    INSERT INTO card_controls (layer, module, unit, card_index, n_windows, class_motif_windows, decoy_windows) VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [k.layer, k.module, k.unit, c.cardIndex, c.windows, c.classMotifWindows, c.decoyWindows])
                for (cls, w) in c.classWindows.sorted(by: { $0.key < $1.key }) where w > 0 {
                    try db.execute(sql: "INSERT INTO card_control_classes (layer, module, unit, class_index, windows) VALUES (?, ?, ?, ?, ?)",
                                   arguments: [k.layer, k.module, k.unit, cls, w])
                }
            }
            for t in motifTests {
                try db.execute(sql: """
                    INSERT INTO card_motif_tests (method, granularity, target_class, motif, n_neurons, share, random_mean, random_sd, n_random, p_value)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [t.ranking.method, t.ranking.granularity, t.ranking.targetClass, t.motif, t.nNeurons, t.share, t.randomMean,
                                     t.randomSD, t.nRandom, t.pValue])
            }
            let n = try db.makeStatement(sql: "INSERT INTO card_neurons (method, granularity, target_class, card_rank, layer, module, unit, best_rank) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            for r in neurons {
                try n.execute(arguments: [r.ranking.method, r.ranking.granularity, r.ranking.targetClass, r.cardRank, r.neuron.layer, r.neuron.module, r.neuron.unit, r.bestRank])
            }
            let p = try db.makeStatement(sql: """
                INSERT INTO neuron_profiles (layer, module, unit, card_index, split, n_sequences, n_top, peak_max, peak_mean, peak_sd, n_terminal_share,
                c_terminal_share, best_class, best_auroc, top_class_entropy, top_class_entropy_max) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            let e = try db.makeStatement(sql: """
                INSERT INTO neuron_examples (layer, module, unit, kind, rank, quantile, sequence_id, ec_label, peak_position, activation, window, window_start,
                motif_pattern, motif_is_decoy) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            let en = try db.makeStatement(sql: """
                INSERT INTO neuron_enrichment (layer, module, unit, offset, residue, count, n, background, log_odds, p_value, q_value)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            let pos = try db.makeStatement(sql: "INSERT INTO neuron_positions (layer, module, unit, bin, count) VALUES (?, ?, ?, ?, ?)")
            let cl = try db.makeStatement(sql: """
                INSERT INTO neuron_classes (layer, module, unit, class_index, n_sequences, peak_mean, peak_sd, auroc, top_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            let sc = try db.makeStatement(sql: "INSERT INTO neuron_subclasses (layer, module, unit, level, ec_number, top_count, split_count) VALUES (?, ?, ?, ?, ?, ?, ?)")
            for c in cards {
                let k = c.neuron
                try p.execute(arguments: [k.layer, k.module, k.unit, c.cardIndex, c.split, c.nSequences, c.nTop, c.peakMax, c.peakMean, c.peakSD,
                                          c.nTerminalShare, c.cTerminalShare, c.bestClass, c.bestAUROC, c.topClassEntropy, c.topClassEntropyMax])
                for x in c.examples {
                    try e.execute(arguments: [k.layer, k.module, k.unit, x.kind, x.rank, x.quantile, x.sequenceID, x.ecLabel, x.peakPosition, x.activation,
                                              x.window, x.windowStart, x.motifPattern, x.motifIsDecoy.map { $0 ? 1 : 0 }])
                }
                for x in c.enrichment {
                    try en.execute(arguments: [k.layer, k.module, k.unit, x.offset, x.residue, x.count, x.n, x.background, x.logOdds, x.pValue, x.qValue])
                }
                for (b, count) in c.positionBins.enumerated() { try pos.execute(arguments: [k.layer, k.module, k.unit, b, count]) }
                for x in c.classes {
                    try cl.execute(arguments: [k.layer, k.module, k.unit, x.classIndex, x.nSequences, x.peakMean, x.peakSD, x.auroc, x.topCount])
                }
                for x in c.subclasses { try sc.execute(arguments: [k.layer, k.module, k.unit, x.level, x.ecNumber, x.topCount, x.splitCount]) }
            }
            try Self.insertLedger(db, ledger)
        }
    }

    /// Every card motif test, by ranking and motif.
    /// - Throws: `StoreError`.
    public func cardMotifTests() throws -> [CardMotifTestRecord] {
        try read("reading card motif tests") { db in
            try Row.fetchAll(db, sql: """
                SELECT method, granularity, target_class, motif, n_neurons, share, random_mean, random_sd, n_random, p_value
                FROM card_motif_tests ORDER BY granularity, method, target_class, motif
                """).map {
                CardMotifTestRecord(ranking: RankingID(method: $0[0], granularity: $0[1], targetClass: $0[2]), motif: $0[3], nNeurons: $0[4], share: $0[5],
                                    randomMean: $0[6], randomSD: $0[7], nRandom: $0[8], pValue: $0[9])
            }
        }
    }

    /// The card list of every ranking, by ranking and card rank.
    public func cardNeurons() throws -> [CardNeuronRecord] {
        try read("reading card neurons") { db in
            try Row.fetchAll(db, sql: "SELECT method, granularity, target_class, card_rank, layer, module, unit, best_rank FROM card_neurons ORDER BY granularity, method, target_class, card_rank").map {
                CardNeuronRecord(ranking: RankingID(method: $0[0], granularity: $0[1], targetClass: $0[2]), cardRank: $0[3],
                                 neuron: NeuronKey(layer: $0[4], module: $0[5], unit: $0[6]), bestRank: $0[7])
            }
        }
    }

    /// View `card_motif_overlap`: per ranking, its card neurons, their top windows, and the shares
    /// of those windows peaking inside a planted class motif and a decoy (empty without cards).
    public func cardMotifOverlap() throws -> [(ranking: RankingID, neurons: Int, windows: Int, classMotifShare: Double, decoyShare: Double)] {
        try read("reading card motif overlap") { db in
            try Row.fetchAll(db, sql: """
                SELECT method, granularity, target_class, n_neurons, n_windows, class_motif_share, decoy_share FROM card_motif_overlap
                ORDER BY granularity, method, target_class
                """).map { (RankingID(method: $0[0], granularity: $0[1], targetClass: $0[2]), $0[3], $0[4], $0[5], $0[6]) }
        }
    }

    /// The card of one neuron, or nil when it has none.
    public func neuronCard(_ k: NeuronKey) throws -> NeuronCardRecord? {
        try read("reading the card of layer \(k.layer) \(k.module) \(k.unit)") { db in
            let args: StatementArguments = [k.layer, k.module, k.unit]
            let key = "WHERE layer = ? AND module = ? AND unit = ?"
            guard let p = try Row.fetchOne(db, sql: """
                SELECT card_index, split, n_sequences, n_top, peak_max, peak_mean, peak_sd, n_terminal_share, c_terminal_share, best_class, best_auroc,
                top_class_entropy, top_class_entropy_max FROM neuron_profiles \(key)
                """, arguments: args) else { return nil }
            var c = NeuronCardRecord(neuron: k, cardIndex: p[0], split: p[1], nSequences: p[2], nTop: p[3], peakMax: p[4], peakMean: p[5], peakSD: p[6],
                                     nTerminalShare: p[7], cTerminalShare: p[8], bestClass: p[9], bestAUROC: p[10], topClassEntropy: p[11], topClassEntropyMax: p[12])
            c.examples = try Row.fetchAll(db, sql: """
                SELECT kind, rank, quantile, sequence_id, ec_label, peak_position, activation, window, window_start, motif_pattern, motif_is_decoy
                FROM neuron_examples \(key) ORDER BY kind DESC, rank
                """, arguments: args).map {
                let decoy: Int? = $0[10]
                return NeuronCardRecord.Example(kind: $0[0], rank: $0[1], quantile: $0[2], sequenceID: $0[3], ecLabel: $0[4], peakPosition: $0[5], activation: $0[6],
                                                window: $0[7], windowStart: $0[8], motifPattern: $0[9], motifIsDecoy: decoy.map { $0 != 0 })
            }
            c.enrichment = try Row.fetchAll(db, sql: "SELECT offset, residue, count, n, background, log_odds, p_value, q_value FROM neuron_enrichment \(key) ORDER BY offset, residue",
                                            arguments: args).map {
                NeuronCardRecord.Enrichment(offset: $0[0], residue: $0[1], count: $0[2], n: $0[3], background: $0[4], logOdds: $0[5], pValue: $0[6], qValue: $0[7])
            }
            c.positionBins = try Int.fetchAll(db, sql: "SELECT count FROM neuron_positions \(key) ORDER BY bin", arguments: args)
            c.classes = try Row.fetchAll(db, sql: "SELECT class_index, n_sequences, peak_mean, peak_sd, auroc, top_count FROM neuron_classes \(key) ORDER BY class_index",
                                         arguments: args).map {
                NeuronCardRecord.ClassProfile(classIndex: $0[0], nSequences: $0[1], peakMean: $0[2], peakSD: $0[3], auroc: $0[4], topCount: $0[5])
            }
            c.subclasses = try Row.fetchAll(db, sql: "SELECT level, ec_number, top_count, split_count FROM neuron_subclasses \(key) ORDER BY level, top_count DESC, ec_number",
                                            arguments: args).map {
                NeuronCardRecord.Subclass(level: $0[0], ecNumber: $0[1], topCount: $0[2], splitCount: $0[3])
            }
            return c
        }
    }
}
