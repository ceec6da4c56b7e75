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
