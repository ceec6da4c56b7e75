import Foundation
import GRDB

/// One knowledge edit measured on one group of test sequences (`knowledge_edits`, migration 0009).
public struct KnowledgeEditRecord: Sendable, Equatable {
    /// The edited ranking's method, granularity (`neuron`) and class; `random` with its seed for the control sets.
    public var ranking: RankingID
    /// Activation multiplier (0 suppresses, 2 amplifies).
    public var factor: Double
    /// `class`: test sequences labelled `ranking.targetClass`; `other`: the rest.
    public var sequences: String
    /// The ranking's linear maps, comma-separated in canonical order.
    public var modules: String
    /// Neurons edited and sequences measured.
    public var nNeurons: Int
    public var nSequences: Int
    /// Mean P(target class) before and after the edit.
    public var pBefore: Double
    public var pAfter: Double
    /// Mean over the sequences of logit(p_after) - logit(p_before), nats
    /// (`EvidenceStatistics.logOdds`): the edit's effect that the control and the test use.
    public var logOddsChange: Double
    /// Mean over the sequences of (p_after - p_before) / p_before (Dai et al. 2021's measure;
    /// dominated by sequences whose p_before was tiny).
    public var relativeChange: Double
    /// Share of the sequences whose predicted class changed.
    public var predictionChanged: Double
    /// For attributed `class` rows: the random sets' log-odds changes (mean, sd, count) and the
    /// one-sided permutation p-value on the log-odds change; nil otherwise.
    public var randomMean: Double?
    public var randomSD: Double?
    public var nRandom: Int?
    public var pValue: Double?
    /// Creates a record from its fields.
    public init(ranking: RankingID, factor: Double, sequences: String, modules: String, nNeurons: Int, nSequences: Int, pBefore: Double,
                pAfter: Double, logOddsChange: Double, relativeChange: Double, predictionChanged: Double, randomMean: Double? = nil, randomSD: Double? = nil,
                nRandom: Int? = nil, pValue: Double? = nil) {
        self.ranking = ranking; self.factor = factor; self.sequences = sequences; self.modules = modules; self.nNeurons = nNeurons
        self.nSequences = nSequences; self.pBefore = pBefore; self.pAfter = pAfter; self.logOddsChange = logOddsChange
        self.relativeChange = relativeChange
        self.predictionChanged = predictionChanged; self.randomMean = randomMean; self.randomSD = randomSD; self.nRandom = nRandom; self.pValue = pValue
    }
}

/// One ranking's Spearman correlation between the real and a randomised model (`sanity_checks`).
public struct SanityCheckRecord: Sendable, Equatable {
    /// `model_randomization` or `label_randomization`.
    public var check: String
    /// Blocks re-initialised (with the head) for model randomisation; 0 for label randomisation.
    public var layersRandomized: Int
    /// The attributed ranking (seed 0).
    public var ranking: RankingID
    /// Spearman's rho of the two score vectors; nil when either is constant.
    public var spearman: Double?
    /// Scores compared and sequences scored.
    public var nScores: Int
    public var nSequences: Int
    /// Creates a record from its fields.
    public init(check: String, layersRandomized: Int, ranking: RankingID, spearman: Double?, nScores: Int, nSequences: Int) {
        self.check = check; self.layersRandomized = layersRandomized; self.ranking = ranking; self.spearman = spearman
        self.nScores = nScores; self.nSequences = nSequences
    }
}

/// A ranking's verdict on one check (`sanity_verdicts`).
public struct SanityVerdictRecord: Sendable, Equatable {
    public var ranking: RankingID
    public var check: String
    /// The correlation with the fully randomised (or label-randomised) model; nil when undefined.
    public var spearman: Double?
    /// The threshold (`sanity.max_spearman`).
    public var maxSpearman: Double
    /// spearman < maxSpearman (an undefined correlation does not pass).
    public var passed: Bool
    /// Creates a record from its fields.
    public init(ranking: RankingID, check: String, spearman: Double?, maxSpearman: Double, passed: Bool) {
        self.ranking = ranking; self.check = check; self.spearman = spearman; self.maxSpearman = maxSpearman; self.passed = passed
    }
}

extension RunDatabase {
    // MARK: knowledge edits

    /// Replaces every knowledge-edit row by `edits`, in one transaction.
    /// - Throws: `StoreError.superseded` when `requiring` changed, `.diskFull`, `.readOnly`, `.sqlite`.
    public func replaceKnowledgeEdits(_ edits: [KnowledgeEditRecord], requiring: LedgerRequirement? = nil) throws {
        try write("writing the knowledge edits") { db in
            try Self.requireLedger(db, requiring, doing: "editing neurons")
            try db.execute(sql: "DELETE FROM knowledge_edits")
            let st = try db.makeStatement(sql: """
                INSERT INTO knowledge_edits (method, granularity, target_class, seed, factor, sequences, modules, n_neurons, n_sequences,
                    p_before, p_after, log_odds_change, relative_change, prediction_changed, random_mean, random_sd, n_random, p_value)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for e in edits {
                try st.execute(arguments: [e.ranking.method, e.ranking.granularity, e.ranking.targetClass, e.ranking.seed, e.factor, e.sequences,
                                           e.modules, e.nNeurons, e.nSequences, e.pBefore, e.pAfter, e.logOddsChange, e.relativeChange, e.predictionChanged,
                                           e.randomMean, e.randomSD, e.nRandom, e.pValue])
            }
        }
    }

    /// The knowledge edits of the attributed rankings (not the random control rows), ordered.
    /// - Throws: `StoreError`.
    public func knowledgeEdits() throws -> [KnowledgeEditRecord] {
        try read("reading knowledge edits") { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM knowledge_edits WHERE method != 'random' ORDER BY method, granularity, target_class, factor, sequences
                """).map {
                KnowledgeEditRecord(ranking: RankingID(method: $0["method"], granularity: $0["granularity"], targetClass: $0["target_class"], seed: $0["seed"]),
                                    factor: $0["factor"], sequences: $0["sequences"], modules: $0["modules"], nNeurons: $0["n_neurons"],
                                    nSequences: $0["n_sequences"], pBefore: $0["p_before"], pAfter: $0["p_after"], logOddsChange: $0["log_odds_change"],
                                    relativeChange: $0["relative_change"],
                                    predictionChanged: $0["prediction_changed"], randomMean: $0["random_mean"], randomSD: $0["random_sd"],
                                    nRandom: $0["n_random"], pValue: $0["p_value"])
            }
        }
    }

    // MARK: sanity checks

    /// Deletes the sanity units (and their correlations) of another unit key. Returns how many units were deleted.
    /// - Throws: `StoreError`.
    public func discardSanityUnits(otherThan unitKey: String) throws -> Int {
        try write("discarding stale sanity units") { db in
            try db.execute(sql: """
                DELETE FROM sanity_checks WHERE (check_name, layers_randomized) IN
                  (SELECT check_name, layers_randomized FROM sanity_units WHERE unit_key != ?)
                """, arguments: [unitKey])
            try db.execute(sql: "DELETE FROM sanity_units WHERE unit_key != ?", arguments: [unitKey])
            return db.changesCount
        }
    }

    /// The (check, layers randomised) units done under `unitKey`.
    /// - Throws: `StoreError`.
    public func finishedSanityUnits(unitKey: String) throws -> Set<String> {
        try read("reading sanity units") { db in
            Set(try Row.fetchAll(db, sql: "SELECT check_name, layers_randomized FROM sanity_units WHERE unit_key = ?", arguments: [unitKey]).map {
                "\($0[0] as String)/\($0[1] as Int)"
            })
        }
    }

    /// How many sanity units are done and their summed seconds (for `status`).
    /// - Throws: `StoreError`.
    public func sanityUnitProgress() throws -> (done: Int, seconds: Double) {
        try read("reading sanity units") { db in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*), COALESCE(SUM(seconds), 0) FROM sanity_units")!
            return (row[0], row[1])
        }
    }

    /// Commits one unit's correlations and its done mark in one transaction; a unit already
    /// recorded is left as it is (returns false).
    /// - Throws: `StoreError.superseded` when `requiring` changed meanwhile, `.diskFull`, `.readOnly`, `.sqlite`.
    @discardableResult
    public func commitSanityUnit(check: String, layersRandomized: Int, rows: [SanityCheckRecord], unitKey: String, seconds: Double,
                                 requiring: LedgerRequirement? = nil) throws -> Bool {
        try write("committing sanity check \(check) \(layersRandomized)") { db in
            try Self.requireLedger(db, requiring, doing: "running sanity checks")
            try db.execute(sql: "INSERT OR IGNORE INTO sanity_units (check_name, layers_randomized, unit_key, seconds) VALUES (?, ?, ?, ?)",
                           arguments: [check, layersRandomized, unitKey, seconds])
            guard db.changesCount == 1 else { return false }
            let st = try db.makeStatement(sql: "INSERT INTO sanity_checks VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            for r in rows {
                try st.execute(arguments: [r.check, r.layersRandomized, r.ranking.method, r.ranking.granularity, r.ranking.targetClass,
                                           r.spearman, r.nScores, r.nSequences])
            }
            return true
        }
    }

    /// The number of layers the stored score sets cover (their largest layer + 1), or nil before attribution.
    /// - Throws: `StoreError`.
    public func scoredLayers() throws -> Int? {
        try read("reading score blocks") { db in try Int.fetchOne(db, sql: "SELECT MAX(layer) + 1 FROM score_blocks") }
    }

    /// Every correlation, ordered by check, layers, ranking.
    /// - Throws: `StoreError`.
    public func sanityChecks() throws -> [SanityCheckRecord] {
        try read("reading sanity checks") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM sanity_checks ORDER BY check_name, layers_randomized, granularity, method, target_class").map {
                SanityCheckRecord(check: $0["check_name"], layersRandomized: $0["layers_randomized"],
                                  ranking: RankingID(method: $0["method"], granularity: $0["granularity"], targetClass: $0["target_class"]),
                                  spearman: $0["spearman"], nScores: $0["n_scores"], nSequences: $0["n_sequences"])
            }
        }
    }

    /// Replaces the verdicts and writes the sanity ledger row in one transaction (nothing is
    /// written when the ledger already records the stage with the same key). Returns the rows written.
    /// - Throws: `StoreError.superseded`, `.diskFull`, `.readOnly`, `.sqlite`.
    @discardableResult
    public func commitSanity(verdicts: [SanityVerdictRecord], ledger: StageRecord, requiring: LedgerRequirement? = nil) throws -> Int {
        try write("writing the sanity verdicts") { db in
            try Self.requireLedger(db, requiring, doing: "judging the sanity checks")
            if let rows = try Self.alreadyRecorded(db, ledger) { return rows }
            try db.execute(sql: "DELETE FROM sanity_verdicts")
            let st = try db.makeStatement(sql: "INSERT INTO sanity_verdicts VALUES (?, ?, ?, ?, ?, ?, ?)")
            for v in verdicts {
                try st.execute(arguments: [v.ranking.method, v.ranking.granularity, v.ranking.targetClass, v.check, v.spearman, v.maxSpearman, v.passed ? 1 : 0])
            }
            var l = ledger
            l.rowsWritten = verdicts.count + (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sanity_checks") ?? 0)
            try Self.insertLedger(db, l)
            return l.rowsWritten
        }
    }

    /// The verdicts, ordered.
    /// - Throws: `StoreError`.
    public func sanityVerdicts() throws -> [SanityVerdictRecord] {
        try read("reading sanity verdicts") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM sanity_verdicts ORDER BY granularity, method, target_class, check_name").map {
                SanityVerdictRecord(ranking: RankingID(method: $0["method"], granularity: $0["granularity"], targetClass: $0["target_class"]),
                                    check: $0["check_name"], spearman: $0["spearman"], maxSpearman: $0["max_spearman"], passed: ($0["passed"] as Int) != 0)
            }
        }
    }
}
