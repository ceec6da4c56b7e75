-- Neuron scores stored as integer-keyed rows (issue 6: 2 million scores written in <= 2 s).
--
-- 0001 kept one WITHOUT ROWID row per weight keyed by (method, seed, layer, module, row,
-- col) text and integers, plus an index on rank; writing 2.08 M scores took 10.5 s, nearly
-- all of it B-tree work on that wide key. Now a score set (one method and seed) gets a
-- small integer id, and a score row is keyed by one integer,
--     id = set_id * 4294967296 + idx,
-- where idx is the weight's canonical index ((layer * 3 + module) * n_rows + row) * n_cols + col
-- with module 0 = query, 1 = key, 2 = value. Rows are appended in id order, so SQLite only
-- appends to the table's B-tree. A view `neuron_scores` with the columns of 0001 decodes
-- them, so queries written against 0001 keep working.

CREATE TABLE score_sets (
    set_id   INTEGER PRIMARY KEY,
    method   TEXT NOT NULL CHECK (method IN ('activation', 'integrated_gradients', 'random')),
    seed     INTEGER NOT NULL,
    n_layers INTEGER NOT NULL CHECK (n_layers > 0),
    n_rows   INTEGER NOT NULL CHECK (n_rows > 0),    -- output units per matrix (hidden size)
    n_cols   INTEGER NOT NULL CHECK (n_cols > 0),    -- input features per matrix (hidden size)
    UNIQUE (method, seed)
);

-- One row per scored weight: rank 1 = highest score within the set; ties broken by idx.
CREATE TABLE score_values (
    id    INTEGER PRIMARY KEY,          -- set_id * 4294967296 + canonical index
    score REAL NOT NULL,
    rank  INTEGER NOT NULL
);

-- Carry over scores written under 0001.
INSERT INTO score_sets (method, seed, n_layers, n_rows, n_cols)
SELECT method, seed, MAX(layer) + 1, MAX(row) + 1, MAX(col) + 1
FROM neuron_scores GROUP BY method, seed ORDER BY method, seed;

INSERT INTO score_values (id, score, rank)
SELECT s.set_id * 4294967296
       + ((n.layer * 3 + CASE n.module WHEN 'query' THEN 0 WHEN 'key' THEN 1 ELSE 2 END) * s.n_rows + n.row) * s.n_cols + n.col,
       n.score, n.rank
FROM neuron_scores n JOIN score_sets s ON s.method = n.method AND s.seed = n.seed
ORDER BY 1;

DROP VIEW selection_members;
DROP VIEW top_neurons;
DROP INDEX neuron_scores_by_rank;
DROP TABLE neuron_scores;

-- Every scored weight with the columns of 0001's table.
CREATE VIEW neuron_scores AS
SELECT s.method, s.seed,
       (v.id % 4294967296) / (3 * s.n_rows * s.n_cols) AS layer,
       CASE ((v.id % 4294967296) / (s.n_rows * s.n_cols)) % 3 WHEN 0 THEN 'query' WHEN 1 THEN 'key' ELSE 'value' END AS module,
       ((v.id % 4294967296) / s.n_cols) % s.n_rows AS row,
       v.id % 4294967296 % s.n_cols AS col,
       v.score, v.rank
FROM score_sets s JOIN score_values v
  ON v.id >= s.set_id * 4294967296 AND v.id < (s.set_id + 1) * 4294967296;

-- Members of every selection (the kept weights).
CREATE VIEW selection_members AS
SELECT s.method, s.retention_fraction, s.seed, n.layer, n.module, n.row, n.col, n.score, n.rank
FROM selections s JOIN neuron_scores n
  ON n.method = s.method AND n.seed = s.seed AND n.rank <= s.n_kept;

-- The 20 highest-scoring weights of each (method, seed, layer, module).
CREATE VIEW top_neurons AS
SELECT method, seed, layer, module, row, col, score, rank, module_rank FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY method, seed, layer, module ORDER BY score DESC, row, col) AS module_rank
    FROM neuron_scores WHERE method != 'random')
WHERE module_rank <= 20;

-- One weight's scores across methods: score and rank under activation and integrated
-- gradients, and its mean rank over the random baseline's seeds (NULL where a method was
-- not run). Filter on layer, module, row and col.
CREATE VIEW neuron_across_methods AS
SELECT layer, module, row, col,
       MAX(CASE WHEN method = 'activation' THEN score END) AS activation_score,
       MAX(CASE WHEN method = 'activation' THEN rank END) AS activation_rank,
       MAX(CASE WHEN method = 'integrated_gradients' THEN score END) AS integrated_gradients_score,
       MAX(CASE WHEN method = 'integrated_gradients' THEN rank END) AS integrated_gradients_rank,
       AVG(CASE WHEN method = 'random' THEN rank END) AS random_rank_mean
FROM neuron_scores GROUP BY layer, module, row, col;
