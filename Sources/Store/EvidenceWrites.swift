import Foundation
import GRDB

/// One evaluated point of a retain or delete curve (`curves`, migration 0008).
public struct CurvePointRecord: Sendable, Equatable {
    /// The ranking: an attribution method's (seed 0) or `random` with its seed.
    public var ranking: RankingID
    /// `retain` (keep the top fraction, ablate the rest) or `delete` (ablate the top fraction).
    public var direction: String
    /// Fraction of the ranking's elements kept (retain) or ablated (delete), in (0, 1).
    public var fraction: Double
    /// The ranking's linear maps, comma-separated in canonical order.
    public var modules: String
    /// Weights or neurons ablated in the submodel, of `nTotal`.
    public var nAblated: Int
    /// Elements of the ranking's layout.
    public var nTotal: Int
    /// Test sequences and how many were classified correctly.
    public var nTest: Int
    public var nCorrect: Int
    /// nCorrect / nTest with its percentile bootstrap 95% interval over test sequences.
    public var accuracy: Double
    public var accuracyLow: Double
    public var accuracyHigh: Double
    /// Macro-F1 over the run's classes (as `evaluations.macro_f1`).
    public var macroF1: Double
    /// Mean softmax probability of each test sequence's label.
    public var pTrue: Double
    /// Creates a record from its fields.
    public init(ranking: RankingID, direction: String, fraction: Double, modules: String, nAblated: Int, nTotal: Int, nTest: Int, nCorrect: Int,
                accuracy: Double, accuracyLow: Double, accuracyHigh: Double, macroF1: Double, pTrue: Double) {
        self.ranking = ranking; self.direction = direction; self.fraction = fraction; self.modules = modules
        self.nAblated = nAblated; self.nTotal = nTotal; self.nTest = nTest; self.nCorrect = nCorrect
        self.accuracy = accuracy; self.accuracyLow = accuracyLow; self.accuracyHigh = accuracyHigh; self.macroF1 = macroF1; self.pTrue = pTrue
    }
}

/// The area under one curve (`curve_auc`), with its test against random for attributed rankings.
public struct CurveAUCRecord: Sendable, Equatable {
    public var ranking: RankingID
    public var direction: String
    /// Normalised areas (mean heights over log10 fraction) of accuracy, macro-F1 and p_true.
    public var accuracy: Double
    public var macroF1: Double
    public var pTrue: Double
    /// One-sided permutation p-value and effect size against the random rankings' accuracy
    /// areas (nil for random rankings, and the effect size when the random areas do not vary).
    public var pValue: Double?
    public var effectSize: Double?
    /// Creates a record from its fields.
    public init(ranking: RankingID, direction: String, accuracy: Double, macroF1: Double, pTrue: Double, pValue: Double?, effectSize: Double?) {
        self.ranking = ranking; self.direction = direction; self.accuracy = accuracy; self.macroF1 = macroF1; self.pTrue = pTrue
        self.pValue = pValue; self.effectSize = effectSize
    }
}

/// One attributed ranking's point tested against the random rankings at the same point (`significance`).
public struct SignificanceRecord: Sendable, Equatable {
    public var ranking: RankingID
    public var direction: String
    public var fraction: Double
    /// The ranking's accuracy and its bootstrap 95% interval.
    public var accuracy: Double
    public var accuracyLow: Double
    public var accuracyHigh: Double
    /// Mean and sd (n - 1) of the random rankings' accuracies, and how many there are.
    public var randomMean: Double
    public var randomSD: Double?
    public var nRandom: Int
    /// (1 + #{random at least as good}) / (1 + nRandom); effect size in random-sd units.
    public var pValue: Double
    public var effectSize: Double?
    /// Creates a record from its fields.
    public init(ranking: RankingID, direction: String, fraction: Double, accuracy: Double, accuracyLow: Double, accuracyHigh: Double,
                randomMean: Double, randomSD: Double?, nRandom: Int, pValue: Double, effectSize: Double?) {
        self.ranking = ranking; self.direction = direction; self.fraction = fraction; self.accuracy = accuracy
        self.accuracyLow = accuracyLow; self.accuracyHigh = accuracyHigh; self.randomMean = randomMean; self.randomSD = randomSD
        self.nRandom = nRandom; self.pValue = pValue; self.effectSize = effectSize
    }
}

extension RunDatabase {
    // MARK: evidence

    /// Deletes the evidence units (and their curve points) of another content key, in one
    /// transaction. Returns how many units were deleted.
    /// - Throws: `StoreError`.
    public func discardEvidenceUnits(otherThan contentKey: String) throws -> Int {
        try write("discarding stale evidence units") { db in
            try db.execute(sql: """
                DELETE FROM curves WHERE (method, granularity, target_class, seed) IN
                  (SELECT method, granularity, target_class, seed FROM evidence_units WHERE content_key != ?)
                """, arguments: [contentKey])
            try db.execute(sql: "DELETE FROM evidence_units WHERE content_key != ?", arguments: [contentKey])
            return db.changesCount
        }
    }

    /// The rankings whose curves are done under `contentKey`.
    /// - Throws: `StoreError`.
    public func finishedEvidenceUnits(contentKey: String) throws -> Set<RankingID> {
        try read("reading evidence units") { db in
            Set(try Row.fetchAll(db, sql: "SELECT method, granularity, target_class, seed FROM evidence_units WHERE content_key = ?", arguments: [contentKey]).map {
                RankingID(method: $0[0], granularity: $0[1], targetClass: $0[2], seed: $0[3])
            })
        }
    }

    /// How many evidence units are done and their summed seconds (for `status`).
    /// - Throws: `StoreError`.
    public func evidenceUnitProgress() throws -> (done: Int, seconds: Double) {
        try read("reading evidence units") { db in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*), COALESCE(SUM(seconds), 0) FROM evidence_units")!
            return (row[0], row[1])
        }
    }

    /// Commits one ranking's curve points and its done mark in one transaction; a unit that is
    /// already recorded is left as it is (returns false).
    /// - Parameter requiring: the upstream ledger row the points were computed from.
    /// - Throws: `StoreError.superseded` when that row changed meanwhile, `.diskFull`, `.readOnly`, `.sqlite`.
    @discardableResult
    public func commitEvidenceUnit(_ ranking: RankingID, points: [CurvePointRecord], contentKey: String, seconds: Double,
                                   requiring: LedgerRequirement? = nil) throws -> Bool {
        try write("committing the curves of \(ranking)") { db in
            try Self.requireLedger(db, requiring, doing: "evaluating curves")
            try db.execute(sql: "INSERT OR IGNORE INTO evidence_units (method, granularity, target_class, seed, content_key, seconds) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [ranking.method, ranking.granularity, ranking.targetClass, ranking.seed, contentKey, seconds])
            guard db.changesCount == 1 else { return false }
            let st = try db.makeStatement(sql: """
                INSERT INTO curves (method, granularity, target_class, seed, direction, fraction, modules, n_ablated, n_total, n_test, n_correct,
                                    accuracy, accuracy_low, accuracy_high, macro_f1, p_true) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for p in points {
                try st.execute(arguments: [p.ranking.method, p.ranking.granularity, p.ranking.targetClass, p.ranking.seed, p.direction, p.fraction, p.modules,
                                           p.nAblated, p.nTotal, p.nTest, p.nCorrect, p.accuracy, p.accuracyLow, p.accuracyHigh, p.macroF1, p.pTrue])
            }
            return true
        }
    }

    /// Every curve point (of the units done under `contentKey` when given), ordered by ranking, direction and fraction.
    /// - Throws: `StoreError`.
    public func curvePoints(contentKey: String? = nil) throws -> [CurvePointRecord] {
        try read("reading curves") { db in
            try Row.fetchAll(db, sql: """
                SELECT c.* FROM curves c JOIN evidence_units u USING (method, granularity, target_class, seed)
                WHERE ? IS NULL OR u.content_key = ? ORDER BY method, granularity, target_class, seed, direction, fraction
                """, arguments: [contentKey, contentKey]).map {
                CurvePointRecord(ranking: RankingID(method: $0["method"], granularity: $0["granularity"], targetClass: $0["target_class"], seed: $0["seed"]),
                                 direction: $0["direction"], fraction: $0["fraction"], modules: $0["modules"], nAblated: $0["n_ablated"],
                                 nTotal: $0["n_total"], nTest: $0["n_test"], nCorrect: $0["n_correct"], accuracy: $0["accuracy"],
                                 accuracyLow: $0["accuracy_low"], accuracyHigh: $0["accuracy_high"], macroF1: $0["macro_f1"], pTrue: $0["p_true"])
            }
        }
    }

    /// Writes the areas and significance tests and the evidence ledger row in one transaction.
    /// Returns the number of rows written; when the ledger already records the stage with the
    /// same key (another process finished first) nothing is written and its row count is returned.
    /// - Throws: `StoreError.superseded`, `.diskFull`, `.readOnly`, `.sqlite`.
    @discardableResult
    public func commitEvidence(auc: [CurveAUCRecord], significance: [SignificanceRecord], ledger: StageRecord,
                               requiring: LedgerRequirement? = nil) throws -> Int {
        try write("writing the evidence tests") { db in
            try Self.requireLedger(db, requiring, doing: "testing the curves")
            if let rows = try Self.alreadyRecorded(db, ledger) { return rows }
            // Rows of an earlier evidence run whose ledger row was dropped (migration 0009) are replaced.
            try db.execute(sql: "DELETE FROM curve_auc")
            try db.execute(sql: "DELETE FROM significance")
            let a = try db.makeStatement(sql: "INSERT INTO curve_auc VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            for r in auc {
                try a.execute(arguments: [r.ranking.method, r.ranking.granularity, r.ranking.targetClass, r.ranking.seed, r.direction,
                                          r.accuracy, r.macroF1, r.pTrue, r.pValue, r.effectSize])
            }
            let s = try db.makeStatement(sql: "INSERT INTO significance VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            for r in significance {
                try s.execute(arguments: [r.ranking.method, r.ranking.granularity, r.ranking.targetClass, r.direction, r.fraction, r.accuracy,
                                          r.accuracyLow, r.accuracyHigh, r.randomMean, r.randomSD, r.nRandom, r.pValue, r.effectSize])
            }
            var l = ledger
            l.rowsWritten = auc.count + significance.count
            try Self.insertLedger(db, l)
            return l.rowsWritten
        }
    }

    /// The significance rows, ordered.
    /// - Throws: `StoreError`.
    public func significance() throws -> [SignificanceRecord] {
        try read("reading significance") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM significance ORDER BY granularity, method, target_class, direction, fraction").map {
                SignificanceRecord(ranking: RankingID(method: $0["method"], granularity: $0["granularity"], targetClass: $0["target_class"]),
                                   direction: $0["direction"], fraction: $0["fraction"], accuracy: $0["accuracy"], accuracyLow: $0["accuracy_low"],
                                   accuracyHigh: $0["accuracy_high"], randomMean: $0["random_mean"], randomSD: $0["random_sd"], nRandom: $0["n_random"],
                                   pValue: $0["p_value"], effectSize: $0["effect_size"])
            }
        }
    }

    /// The curve areas, ordered.
    /// - Throws: `StoreError`.
    public func curveAreas() throws -> [CurveAUCRecord] {
        try read("reading curve areas") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM curve_auc ORDER BY granularity, method, target_class, seed, direction").map {
                CurveAUCRecord(ranking: RankingID(method: $0["method"], granularity: $0["granularity"], targetClass: $0["target_class"], seed: $0["seed"]),
                               direction: $0["direction"], accuracy: $0["auc_accuracy"], macroF1: $0["auc_macro_f1"], pTrue: $0["auc_p_true"],
                               pValue: $0["p_value"], effectSize: $0["effect_size"])
            }
        }
    }
}
