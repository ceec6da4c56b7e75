-- kneuron schema, version 1. One database holds one run of one pipeline spec.
-- Append-only: never edit a released migration; add NNNN_name.sql instead.

-- The run: the spec it was started from. Exactly one row.
CREATE TABLE run (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    name            TEXT NOT NULL,
    spec_path       TEXT NOT NULL,
    spec_yaml       TEXT NOT NULL,
    spec_sha256     TEXT NOT NULL,
    kneuron_version TEXT NOT NULL,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- The ledger of finished stages. A stage's rows and its ledger row are written in one
-- transaction, so a row here means the stage's output is complete. `content_key` is the
-- stage version plus the SHA-256 of its inputs and parameters.
CREATE TABLE stages (
    stage        TEXT PRIMARY KEY CHECK (stage IN ('ingest','tokenize','split','train','attribute','select','evaluate','report')),
    content_key  TEXT NOT NULL,
    rows_written INTEGER NOT NULL,
    seconds      REAL NOT NULL,
    finished_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    parameters   TEXT NOT NULL DEFAULT ''   -- "name<TAB>value" lines the key was made from (for messages)
);

-- Input files as read by ingest.
CREATE TABLE input_files (
    path       TEXT PRIMARY KEY,
    role       TEXT NOT NULL CHECK (role IN ('fasta', 'labels')),
    size_bytes INTEGER NOT NULL,
    sha256     TEXT NOT NULL
);

-- EC labels at the run's label level, one row per class the classifier predicts.
CREATE TABLE classes (
    class_index INTEGER PRIMARY KEY,
    ec_label    TEXT NOT NULL UNIQUE,   -- e.g. '3.-.-.-' at level 1
    name        TEXT                    -- ExPASy class name, e.g. 'Hydrolases'
);

-- Accepted sequences with their label at the run's level.
CREATE TABLE sequences (
    id           TEXT PRIMARY KEY,      -- accession, e.g. 'P12345'
    sequence     TEXT NOT NULL,
    length       INTEGER NOT NULL CHECK (length > 0),
    ec_label     TEXT NOT NULL REFERENCES classes(ec_label),
    source_file  TEXT NOT NULL,
    source_line  INTEGER NOT NULL,
    notes        TEXT NOT NULL DEFAULT ''
);

-- Every EC number given for an accepted sequence (several per protein are common).
CREATE TABLE labels (
    sequence_id TEXT NOT NULL REFERENCES sequences(id),
    ec_number   TEXT NOT NULL,          -- full EC as given, e.g. '3.4.21.-', '4.2.2.n1'
    PRIMARY KEY (sequence_id, ec_number)
) WITHOUT ROWID;

-- Records that could not be used, with the reason. Nothing is dropped silently.
CREATE TABLE rejected_records (
    file      TEXT NOT NULL,
    line      INTEGER NOT NULL,         -- 1-based; 0 when not tied to a line
    record_id TEXT NOT NULL,            -- '' when the record has no ID
    reason    TEXT NOT NULL,
    PRIMARY KEY (file, line, record_id, reason)
) WITHOUT ROWID;

-- ESM-2 token ids: <cls> residues <eos>, cropped to the spec's max length.
CREATE TABLE tokens (
    sequence_id     TEXT PRIMARY KEY REFERENCES sequences(id),
    token_ids       BLOB NOT NULL,      -- little-endian int32, n_tokens values
    n_tokens        INTEGER NOT NULL,
    residue_start   INTEGER NOT NULL,   -- 0-based first kept residue
    residue_end     INTEGER NOT NULL,   -- exclusive
    original_length INTEGER NOT NULL,
    cropped         INTEGER NOT NULL CHECK (cropped IN (0, 1))
);

-- train / select / test assignment.
CREATE TABLE splits (
    sequence_id TEXT PRIMARY KEY REFERENCES sequences(id),
    split       TEXT NOT NULL CHECK (split IN ('train', 'select', 'test'))
);

-- Per-epoch training curve.
CREATE TABLE training_epochs (
    epoch           INTEGER PRIMARY KEY,  -- 1-based
    train_loss      REAL NOT NULL,
    train_accuracy  REAL NOT NULL,
    select_loss     REAL NOT NULL,
    select_accuracy REAL NOT NULL,
    seconds         REAL NOT NULL
);

-- Saved model weights (HF EsmForSequenceClassification directories).
CREATE TABLE checkpoints (
    name        TEXT PRIMARY KEY,       -- 'initial', 'final'
    directory   TEXT NOT NULL,
    sha256      TEXT NOT NULL,          -- of model.safetensors
    size_bytes  INTEGER NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Attribution work units. A row exists only for a finished shard: its partial sums and
-- its done mark are the same row, written in one transaction. content_key is the attribute
-- stage's key (its parameters and the model); shards of another key are discarded on resume.
CREATE TABLE shards (
    method        TEXT NOT NULL CHECK (method IN ('activation', 'integrated_gradients')),
    shard_index   INTEGER NOT NULL,
    content_key   TEXT NOT NULL,
    n_sequences   INTEGER NOT NULL,
    sums          BLOB NOT NULL,        -- little-endian float64 partial sums (see README)
    seconds       REAL NOT NULL,
    finished_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (method, shard_index)
);

-- Integrated-gradients completeness per sequence: sum of attributions vs P(full) - P(baseline).
CREATE TABLE ig_completeness (
    sequence_id     TEXT PRIMARY KEY REFERENCES sequences(id),
    shard_index     INTEGER NOT NULL,
    target_class    INTEGER NOT NULL,
    p_full          REAL NOT NULL,
    p_baseline      REAL NOT NULL,
    attribution_sum REAL NOT NULL,
    gap             REAL NOT NULL       -- attribution_sum - (p_full - p_baseline)
);

-- One score per weight of every query/key/value matrix. method 'random' holds the
-- uniform random scores of the random baseline, one set per seed (seed 0 otherwise).
-- rank 1 = highest score within (method, seed); ties broken by (layer, module, row, col).
CREATE TABLE neuron_scores (
    method TEXT NOT NULL CHECK (method IN ('activation', 'integrated_gradients', 'random')),
    seed   INTEGER NOT NULL,
    layer  INTEGER NOT NULL,
    module TEXT NOT NULL CHECK (module IN ('query', 'key', 'value')),
    row    INTEGER NOT NULL,            -- output unit (PyTorch weight row)
    col    INTEGER NOT NULL,            -- input feature
    score  REAL NOT NULL,
    rank   INTEGER NOT NULL,
    PRIMARY KEY (method, seed, layer, module, row, col)
) WITHOUT ROWID;
CREATE INDEX neuron_scores_by_rank ON neuron_scores (method, seed, rank);

-- A kept subset: the n_kept highest-ranked weights of (method, seed).
CREATE TABLE selections (
    method             TEXT NOT NULL,
    retention_fraction REAL NOT NULL CHECK (retention_fraction > 0 AND retention_fraction <= 1),
    seed               INTEGER NOT NULL,
    n_kept             INTEGER NOT NULL,
    n_total            INTEGER NOT NULL,
    min_kept_score     REAL,
    PRIMARY KEY (method, retention_fraction, seed)
);

-- Kept weights per layer x module for each selection.
CREATE TABLE selection_density (
    method             TEXT NOT NULL,
    retention_fraction REAL NOT NULL,
    seed               INTEGER NOT NULL,
    layer              INTEGER NOT NULL,
    module             TEXT NOT NULL,
    n_kept             INTEGER NOT NULL,
    n_total            INTEGER NOT NULL,
    PRIMARY KEY (method, retention_fraction, seed, layer, module),
    FOREIGN KEY (method, retention_fraction, seed) REFERENCES selections (method, retention_fraction, seed)
) WITHOUT ROWID;

-- Test-set quality of the full model (method 'full', fraction 1.0) and every submodel.
CREATE TABLE evaluations (
    method             TEXT NOT NULL,
    retention_fraction REAL NOT NULL,
    seed               INTEGER NOT NULL,
    n_test             INTEGER NOT NULL,
    n_correct          INTEGER NOT NULL,
    accuracy           REAL NOT NULL,
    macro_f1           REAL NOT NULL,
    PRIMARY KEY (method, retention_fraction, seed)
);

CREATE TABLE evaluation_classes (
    method             TEXT NOT NULL,
    retention_fraction REAL NOT NULL,
    seed               INTEGER NOT NULL,
    class_index        INTEGER NOT NULL REFERENCES classes(class_index),
    n                  INTEGER NOT NULL,
    n_correct          INTEGER NOT NULL,
    accuracy           REAL,            -- NULL when the class has no test sequence
    f1                 REAL NOT NULL,
    PRIMARY KEY (method, retention_fraction, seed, class_index),
    FOREIGN KEY (method, retention_fraction, seed) REFERENCES evaluations (method, retention_fraction, seed)
) WITHOUT ROWID;

-- Views for common questions.

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

-- Share of weights kept per layer x module, per selection.
CREATE VIEW kept_density AS
SELECT method, retention_fraction, seed, layer, module, n_kept, n_total,
       CAST(n_kept AS REAL) / n_total AS density
FROM selection_density;

-- Accuracy per method x retention fraction; random as mean and standard deviation over seeds.
CREATE VIEW accuracy_table AS
SELECT method, retention_fraction, COUNT(*) AS n_seeds,
       AVG(accuracy) AS accuracy_mean,
       CASE WHEN COUNT(*) > 1 THEN
         sqrt(MAX(0.0, (SUM(accuracy * accuracy) - COUNT(*) * AVG(accuracy) * AVG(accuracy)) / (COUNT(*) - 1)))
       END AS accuracy_sd,
       AVG(macro_f1) AS macro_f1_mean
FROM evaluations GROUP BY method, retention_fraction;
