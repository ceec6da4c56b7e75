-- One attribution engine for every module, granularity, target and method (issue 10).
--
-- Until 0005 a score set was (method, seed) over the query/key/value weights, its layout
-- re-derived in SQL from n_layers/n_rows/n_cols with `* 3` and `% 3`, and method names were
-- CHECKed. Now:
--   * a ranking is (method, granularity, target_class, seed): granularity 'weight' (every
--     element of the chosen weight matrices) or 'neuron' (every output unit of the chosen
--     linear maps); target_class -1 = F is P(true class) of each sequence (and the random
--     baseline), c >= 0 = the per_class ranking of class c (F = P(c) over class-c sequences);
--   * the layout of every score set is stored in `score_blocks` (one row per matrix or per
--     map's units: layer, module, n_rows, n_cols, offset into the set's canonical index), and
--     every view reads offsets from there;
--   * method and module names are not CHECKed (a new method needs no migration).
-- Rows written before keep their meaning: granularity 'weight', target_class -1, modules
-- query,key,value; the full model's evaluation gets granularity 'none'.

DROP VIEW neuron_across_methods;
DROP VIEW top_neurons;
DROP VIEW selection_members;
DROP VIEW neuron_scores;
DROP VIEW kept_density;
DROP VIEW accuracy_table;

-- Score sets -----------------------------------------------------------------------------

CREATE TABLE score_sets_0006 (
    set_id       INTEGER PRIMARY KEY,
    method       TEXT NOT NULL,       -- activation, integrated_gradients, gradient_x_activation, random
    granularity  TEXT NOT NULL,       -- weight | neuron
    target_class INTEGER NOT NULL,    -- -1: true class (and random); c: per_class ranking of class c
    seed         INTEGER NOT NULL,    -- random baseline seed; 0 otherwise
    modules      TEXT NOT NULL,       -- scored linear maps, canonical order, comma-separated
    n_layers     INTEGER NOT NULL,
    n_scores     INTEGER NOT NULL CHECK (n_scores > 0),
    UNIQUE (method, granularity, target_class, seed)
);
INSERT INTO score_sets_0006 (set_id, method, granularity, target_class, seed, modules, n_layers, n_scores)
SELECT set_id, method, 'weight', -1, seed, 'query,key,value', n_layers, n_layers * 3 * n_rows * n_cols FROM score_sets;

-- One block per (layer, module) of a set: a weight matrix (n_rows output units x n_cols input
-- features, PyTorch (out, in) row-major) or a map's units (n_cols = 1).
CREATE TABLE score_blocks (
    set_id      INTEGER NOT NULL REFERENCES score_sets_0006 (set_id),
    block_index INTEGER NOT NULL,
    layer       INTEGER NOT NULL,
    module      TEXT NOT NULL,        -- query, key, value, attention_output, intermediate, output
    n_rows      INTEGER NOT NULL CHECK (n_rows > 0),
    n_cols      INTEGER NOT NULL CHECK (n_cols > 0),
    offset      INTEGER NOT NULL,     -- canonical index of the block's first element
    PRIMARY KEY (set_id, block_index)
) WITHOUT ROWID;
WITH RECURSIVE l(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM l WHERE i < 1023),
     m(k, name) AS (VALUES (0, 'query'), (1, 'key'), (2, 'value'))
INSERT INTO score_blocks (set_id, block_index, layer, module, n_rows, n_cols, offset)
SELECT s.set_id, l.i * 3 + m.k, l.i, m.name, s.n_rows, s.n_cols, (l.i * 3 + m.k) * s.n_rows * s.n_cols
FROM score_sets s JOIN l ON l.i < s.n_layers JOIN m ORDER BY s.set_id, l.i, m.k;

DROP TABLE score_sets;
ALTER TABLE score_sets_0006 RENAME TO score_sets;

-- Shards: one per (method, granularity, shard index). class_counts NULL = the sums are one
-- group (every sequence); else little-endian int64 sequences per class and the sums hold
-- one group per class (per_class targets), concatenated.
CREATE TABLE shards_0006 (
    method        TEXT NOT NULL,
    granularity   TEXT NOT NULL,
    shard_index   INTEGER NOT NULL,
    content_key   TEXT NOT NULL,
    n_sequences   INTEGER NOT NULL,
    class_counts  BLOB,
    sums          BLOB NOT NULL,
    seconds       REAL NOT NULL,
    finished_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (method, granularity, shard_index)
);
INSERT INTO shards_0006 (method, granularity, shard_index, content_key, n_sequences, class_counts, sums, seconds, finished_at)
SELECT method, 'weight', shard_index, content_key, n_sequences, NULL, sums, seconds, finished_at FROM shards;
DROP TABLE shards;
ALTER TABLE shards_0006 RENAME TO shards;

-- Integrated-gradients completeness: one row per sequence and path (weight granularity: one
-- path over every chosen matrix, layer -1 and module ''; neuron granularity: one per site).
CREATE TABLE ig_completeness_0006 (
    sequence_id     TEXT NOT NULL REFERENCES sequences(id),
    granularity     TEXT NOT NULL,
    layer           INTEGER NOT NULL,
    module          TEXT NOT NULL,
    shard_index     INTEGER NOT NULL,
    target_class    INTEGER NOT NULL,
    p_full          REAL NOT NULL,
    p_baseline      REAL NOT NULL,
    attribution_sum REAL NOT NULL,
    gap             REAL NOT NULL,      -- attribution_sum - (p_full - p_baseline)
    PRIMARY KEY (sequence_id, granularity, layer, module)
) WITHOUT ROWID;
INSERT INTO ig_completeness_0006 SELECT sequence_id, 'weight', -1, '', shard_index, target_class, p_full, p_baseline, attribution_sum, gap
FROM ig_completeness;
DROP TABLE ig_completeness;
ALTER TABLE ig_completeness_0006 RENAME TO ig_completeness;

-- Selections, densities, evaluations gain (granularity, target_class) ----------------------

CREATE TABLE selections_0006 (
    method             TEXT NOT NULL,
    granularity        TEXT NOT NULL,
    target_class       INTEGER NOT NULL,
    retention_fraction REAL NOT NULL CHECK (retention_fraction > 0 AND retention_fraction <= 1),
    seed               INTEGER NOT NULL,
    n_kept             INTEGER NOT NULL,
    n_total            INTEGER NOT NULL,
    min_kept_score     REAL,
    PRIMARY KEY (method, granularity, target_class, retention_fraction, seed)
);
INSERT INTO selections_0006 SELECT method, 'weight', -1, retention_fraction, seed, n_kept, n_total, min_kept_score FROM selections;

CREATE TABLE selection_density_0006 (
    method             TEXT NOT NULL,
    granularity        TEXT NOT NULL,
    target_class       INTEGER NOT NULL,
    retention_fraction REAL NOT NULL,
    seed               INTEGER NOT NULL,
    layer              INTEGER NOT NULL,
    module             TEXT NOT NULL,
    n_kept             INTEGER NOT NULL,
    n_total            INTEGER NOT NULL,
    PRIMARY KEY (method, granularity, target_class, retention_fraction, seed, layer, module),
    FOREIGN KEY (method, granularity, target_class, retention_fraction, seed)
        REFERENCES selections_0006 (method, granularity, target_class, retention_fraction, seed)
) WITHOUT ROWID;
INSERT INTO selection_density_0006 SELECT method, 'weight', -1, retention_fraction, seed, layer, module, n_kept, n_total FROM selection_density;

CREATE TABLE evaluations_0006 (
    method             TEXT NOT NULL,       -- 'full' for the unpruned model
    granularity        TEXT NOT NULL,       -- 'none' for the full model
    target_class       INTEGER NOT NULL,
    retention_fraction REAL NOT NULL,
    seed               INTEGER NOT NULL,
    n_test             INTEGER NOT NULL,
    n_correct          INTEGER NOT NULL,
    accuracy           REAL NOT NULL,
    macro_f1           REAL NOT NULL,
    PRIMARY KEY (method, granularity, target_class, retention_fraction, seed)
);
INSERT INTO evaluations_0006 SELECT method, CASE WHEN method = 'full' THEN 'none' ELSE 'weight' END, -1,
    retention_fraction, seed, n_test, n_correct, accuracy, macro_f1 FROM evaluations;

CREATE TABLE evaluation_classes_0006 (
    method             TEXT NOT NULL,
    granularity        TEXT NOT NULL,
    target_class       INTEGER NOT NULL,
    retention_fraction REAL NOT NULL,
    seed               INTEGER NOT NULL,
    class_index        INTEGER NOT NULL REFERENCES classes(class_index),
    n                  INTEGER NOT NULL,
    n_correct          INTEGER NOT NULL,
    accuracy           REAL,            -- NULL when the class has no test sequence
    f1                 REAL NOT NULL,
    PRIMARY KEY (method, granularity, target_class, retention_fraction, seed, class_index),
    FOREIGN KEY (method, granularity, target_class, retention_fraction, seed)
        REFERENCES evaluations_0006 (method, granularity, target_class, retention_fraction, seed)
) WITHOUT ROWID;
INSERT INTO evaluation_classes_0006 SELECT method, CASE WHEN method = 'full' THEN 'none' ELSE 'weight' END, -1,
    retention_fraction, seed, class_index, n, n_correct, accuracy, f1 FROM evaluation_classes;

DROP TABLE evaluation_classes;
DROP TABLE evaluations;
DROP TABLE selection_density;
DROP TABLE selections;
ALTER TABLE selections_0006 RENAME TO selections;
ALTER TABLE selection_density_0006 RENAME TO selection_density;
ALTER TABLE evaluations_0006 RENAME TO evaluations;
ALTER TABLE evaluation_classes_0006 RENAME TO evaluation_classes;

-- Views ----------------------------------------------------------------------------------

-- Every score with its place, decoded through score_blocks: `row` is the output unit and
-- `col` the input feature of the PyTorch (out, in) weight (weight granularity), or `row` the
-- unit and `col` 0 (neuron granularity).
-- The joins run in the written order (CROSS JOIN), so a filter on the set (method,
-- granularity, target_class, seed) or the block (layer, module) narrows the sets and blocks
-- first and only their id ranges of score_values are read.
CREATE VIEW neuron_scores AS
SELECT s.method, s.granularity, s.target_class, s.seed, b.layer, b.module,
       (v.id - s.set_id * 4294967296 - b.offset) / b.n_cols AS row,
       (v.id - s.set_id * 4294967296 - b.offset) % b.n_cols AS col,
       v.score, v.rank
FROM score_sets s
CROSS JOIN score_blocks b ON b.set_id = s.set_id
CROSS JOIN score_values v ON v.id >= s.set_id * 4294967296 + b.offset
                         AND v.id < s.set_id * 4294967296 + b.offset + b.n_rows * b.n_cols;

-- Members of every selection (the kept weights or neurons).
CREATE VIEW selection_members AS
SELECT s.method, s.granularity, s.target_class, s.retention_fraction, s.seed, n.layer, n.module, n.row, n.col, n.score, n.rank
FROM selections s JOIN neuron_scores n
  ON n.method = s.method AND n.granularity = s.granularity AND n.target_class = s.target_class
 AND n.seed = s.seed AND n.rank <= s.n_kept;

-- The 20 highest-scoring weights or neurons of each ranking (random excluded), layer and
-- module: `rank` is the ranking's global rank, `module_rank` the rank inside the block.
CREATE VIEW top_neurons AS
SELECT method, granularity, target_class, seed, layer, module, row, col, score, rank, module_rank FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY method, granularity, target_class, seed, layer, module
                                 ORDER BY score DESC, row, col) AS module_rank
    FROM neuron_scores WHERE method != 'random')
WHERE module_rank <= 20
ORDER BY method, granularity, target_class, seed, layer, module, module_rank;

-- Per-class knowledge neurons: the 20 best of each per_class ranking overall, with the class.
CREATE VIEW class_top_neurons AS
SELECT n.method, n.granularity, n.target_class, c.ec_label, c.name AS class_name,
       n.layer, n.module, n.row, n.col, n.score, n.rank
FROM neuron_scores n JOIN classes c ON c.class_index = n.target_class
WHERE n.method != 'random' AND n.target_class >= 0 AND n.rank <= 20
ORDER BY n.method, n.granularity, n.target_class, n.rank;

-- One weight's or neuron's scores across methods and targets (long form): filter on
-- granularity, layer, module, row, col. `n_scores`: the ranking's size (rank 1 = best);
-- `ec_label`: the per_class ranking's class (NULL for the true class); random_rank_mean: the
-- element's mean rank over the random seeds of its granularity.
CREATE VIEW neuron_across_methods AS
SELECT n.granularity, n.layer, n.module, n.row, n.col, n.method, n.target_class, c.ec_label, n.score, n.rank,
       (SELECT s.n_scores FROM score_sets s WHERE s.method = n.method AND s.granularity = n.granularity
          AND s.target_class = n.target_class AND s.seed = n.seed) AS n_scores,
       (SELECT AVG(r.rank) FROM neuron_scores r
         WHERE r.method = 'random' AND r.granularity = n.granularity AND r.layer = n.layer
           AND r.module = n.module AND r.row = n.row AND r.col = n.col) AS random_rank_mean
FROM neuron_scores n LEFT JOIN classes c ON c.class_index = n.target_class
WHERE n.method != 'random';

-- Share of weights or neurons kept per layer x module, per selection.
CREATE VIEW kept_density AS
SELECT method, granularity, target_class, retention_fraction, seed, layer, module, n_kept, n_total,
       CAST(n_kept AS REAL) / n_total AS density
FROM selection_density;

-- Accuracy per ranking x retention fraction; random as mean and standard deviation over seeds
-- (two-pass, as 0005).
CREATE VIEW accuracy_table AS
SELECT e.method, e.granularity, e.target_class, e.retention_fraction, COUNT(*) AS n_seeds,
       AVG(e.accuracy) AS accuracy_mean,
       CASE WHEN COUNT(*) > 1 THEN
         sqrt(SUM((e.accuracy - m.mean) * (e.accuracy - m.mean)) / (COUNT(*) - 1))
       END AS accuracy_sd,
       AVG(e.macro_f1) AS macro_f1_mean
FROM evaluations e
JOIN (SELECT method, granularity, target_class, retention_fraction, AVG(accuracy) AS mean
      FROM evaluations GROUP BY method, granularity, target_class, retention_fraction) m
  ON m.method = e.method AND m.granularity = e.granularity AND m.target_class = e.target_class
 AND m.retention_fraction = e.retention_fraction
GROUP BY e.method, e.granularity, e.target_class, e.retention_fraction
ORDER BY e.granularity, e.method, e.target_class, e.retention_fraction DESC;
