-- Evidence that a ranking is special (issue 11): curves against random rankings.
--
-- For each stored ranking (method, granularity, target_class; seed 0) and each of the random
-- rankings of its granularity (method 'random', seeds 1 ... evidence.random_rankings), the
-- evidence stage evaluates on the test split, at every fraction of `evidence.fractions`, the
-- submodel that keeps the top fraction and ablates the rest (direction 'retain', the paper's)
-- and the one that ablates the top fraction and keeps the rest ('delete'). One ranking's
-- points are one resumable unit (evidence_units, committed with its points). When every unit is
-- done: the area under each curve (curve_auc) and, per ranking, direction and fraction, a
-- permutation test against the random rankings with a bootstrap interval (significance).

CREATE TABLE evidence_units (
    method       TEXT NOT NULL,
    granularity  TEXT NOT NULL,
    target_class INTEGER NOT NULL,
    seed         INTEGER NOT NULL,
    content_key  TEXT NOT NULL,      -- the evidence stage's key the unit was computed under
    seconds      REAL NOT NULL,
    finished_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (method, granularity, target_class, seed)
);

CREATE TABLE curves (
    method        TEXT NOT NULL,
    granularity   TEXT NOT NULL,
    target_class  INTEGER NOT NULL,
    seed          INTEGER NOT NULL,
    direction     TEXT NOT NULL,     -- retain | delete
    fraction      REAL NOT NULL,     -- of the ranking's elements, kept (retain) or ablated (delete)
    modules       TEXT NOT NULL,     -- the ranking's linear maps, canonical order, comma-separated
    n_ablated     INTEGER NOT NULL,  -- weights or neurons ablated in the submodel
    n_total       INTEGER NOT NULL,
    n_test        INTEGER NOT NULL,
    n_correct     INTEGER NOT NULL,
    accuracy      REAL NOT NULL,
    accuracy_low  REAL NOT NULL,     -- percentile bootstrap 95% interval over test sequences
    accuracy_high REAL NOT NULL,
    macro_f1      REAL NOT NULL,
    p_true        REAL NOT NULL,     -- mean softmax probability of the true class
    PRIMARY KEY (method, granularity, target_class, seed, direction, fraction),
    FOREIGN KEY (method, granularity, target_class, seed) REFERENCES evidence_units (method, granularity, target_class, seed)
) WITHOUT ROWID;

-- Normalised area under each curve over log10(fraction) (every decade of the grid counts the
-- same; the area divided by the log10 range, so it is the curve's mean height), with, for the
-- attributed rankings, the one-sided permutation p-value against the random rankings' areas and
-- the effect size in random-sd units (retain: higher is better; delete: lower is better).
CREATE TABLE curve_auc (
    method       TEXT NOT NULL,
    granularity  TEXT NOT NULL,
    target_class INTEGER NOT NULL,
    seed         INTEGER NOT NULL,
    direction    TEXT NOT NULL,
    auc_accuracy REAL NOT NULL,
    auc_macro_f1 REAL NOT NULL,
    auc_p_true   REAL NOT NULL,
    p_value      REAL,               -- NULL for the random rankings
    effect_size  REAL,
    PRIMARY KEY (method, granularity, target_class, seed, direction)
) WITHOUT ROWID;

-- One attributed ranking's accuracy at one direction and fraction against the random
-- rankings of its granularity at the same point: p_value = (1 + #{random at least as good}) /
-- (1 + n_random) (retain: accuracy >=; delete: accuracy <=), effect_size = (accuracy -
-- random_mean) / random_sd (negative is better for delete).
CREATE TABLE significance (
    method        TEXT NOT NULL,
    granularity   TEXT NOT NULL,
    target_class  INTEGER NOT NULL,
    direction     TEXT NOT NULL,
    fraction      REAL NOT NULL,
    accuracy      REAL NOT NULL,
    accuracy_low  REAL NOT NULL,
    accuracy_high REAL NOT NULL,
    random_mean   REAL NOT NULL,
    random_sd     REAL,
    n_random      INTEGER NOT NULL,
    p_value       REAL NOT NULL,
    effect_size   REAL,
    PRIMARY KEY (method, granularity, target_class, direction, fraction)
) WITHOUT ROWID;

-- The ledger's stage names are no longer CHECKed (a new stage, like this one, needs no
-- migration of the ledger); the rows are kept.
CREATE TABLE stages_0008 (
    stage        TEXT PRIMARY KEY,
    content_key  TEXT NOT NULL,
    rows_written INTEGER NOT NULL,
    seconds      REAL NOT NULL,
    finished_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    parameters   TEXT NOT NULL DEFAULT ''   -- "name<TAB>value" lines the key was made from (for messages)
);
INSERT INTO stages_0008 (stage, content_key, rows_written, seconds, finished_at, parameters)
SELECT stage, content_key, rows_written, seconds, finished_at, parameters FROM stages;
DROP TABLE stages;
ALTER TABLE stages_0008 RENAME TO stages;

-- A report written before this migration has no evidence section and its content key follows
-- evaluate, not evidence: its ledger row is dropped so that the next run writes the report
-- again after the evidence stage (the report stage only reads the database, so nothing is lost).
DELETE FROM stages WHERE stage = 'report';

-- all_scores: a score_rows BLOB of the wrong length (a damaged database) gives NULL scores
-- instead of decoding garbage; neuron_across_methods: random_rank_mean only when every random
-- seed of the granularity has a ranked row for the element (else NULL: the mean of the ranked
-- rows alone would be biased towards the top ranks).
DROP VIEW neuron_across_methods;
DROP VIEW all_scores;
CREATE VIEW all_scores AS
SELECT method, granularity, target_class, seed, layer, module, row, col,
       CASE WHEN bits >> 31 THEN -1.0 ELSE 1.0 END
         * ((bits & 8388607) + CASE WHEN (bits >> 23) & 255 > 0 THEN 8388608 ELSE 0 END)
         * (SELECT f.scale FROM float32_scales f WHERE f.exponent = (bits >> 23) & 255) AS score,
       (SELECT v.rank FROM score_values v WHERE v.id = score_id) AS rank
FROM (
  SELECT method, granularity, target_class, seed, layer, module, row, col, score_id,
         (instr('0123456789ABCDEF', substr(h, 1, 1)) - 1) * 16 + instr('0123456789ABCDEF', substr(h, 2, 1)) - 1
       + (((instr('0123456789ABCDEF', substr(h, 3, 1)) - 1) * 16 + instr('0123456789ABCDEF', substr(h, 4, 1)) - 1) << 8)
       + (((instr('0123456789ABCDEF', substr(h, 5, 1)) - 1) * 16 + instr('0123456789ABCDEF', substr(h, 6, 1)) - 1) << 16)
       + (((instr('0123456789ABCDEF', substr(h, 7, 1)) - 1) * 16 + instr('0123456789ABCDEF', substr(h, 8, 1)) - 1) << 24) AS bits
  FROM (
    SELECT s.method, s.granularity, s.target_class, s.seed, b.layer, b.module, r.row, c.col,
           s.set_id * 4294967296 + b.offset + r.row * b.n_cols + c.col AS score_id,
           CASE WHEN length(r.scores) = 4 * b.n_cols THEN hex(substr(r.scores, 4 * c.col + 1, 4)) END AS h
    FROM score_sets s
    CROSS JOIN score_blocks b ON b.set_id = s.set_id
    CROSS JOIN score_rows r ON r.set_id = b.set_id AND r.block_index = b.block_index
    CROSS JOIN score_columns c ON c.col < b.n_cols));
CREATE VIEW neuron_across_methods AS
SELECT n.granularity, n.layer, n.module, n.row, n.col, n.method, n.target_class, c.ec_label, n.score, n.rank,
       (SELECT s.n_scores FROM score_sets s WHERE s.method = n.method AND s.granularity = n.granularity
          AND s.target_class = n.target_class AND s.seed = n.seed) AS n_scores,
       (SELECT CASE WHEN COUNT(*) = (SELECT COUNT(*) FROM score_sets q WHERE q.method = 'random' AND q.granularity = n.granularity)
                    THEN AVG(r.rank) END
          FROM neuron_scores r
         WHERE r.method = 'random' AND r.granularity = n.granularity AND r.layer = n.layer
           AND r.module = n.module AND r.row = n.row AND r.col = n.col) AS random_rank_mean
FROM all_scores n LEFT JOIN classes c ON c.class_index = n.target_class
WHERE n.method != 'random';
