-- Knowledge edits (suppress and amplify) and sanity checks (issue 11).
--
-- knowledge_edits: for each per-class neuron ranking (target_class c, seed 0) the evidence
-- stage multiplies the activations of its top `evidence.edit_top` neurons by each factor of
-- `evidence.edit_factors` (0 suppresses, 2 amplifies; Dai et al. 2021, arXiv 2104.08696) and
-- measures on the test split, separately for the sequences labelled c ('class') and the others
-- ('other'), the mean probability of class c before and after, the mean relative change
-- (p_after - p_before) / p_before over those sequences, and the share whose predicted class
-- changed. The same edit of random sets of as many neurons (method 'random', seeds 1 ...
-- `evidence.edit_random_sets`, one edit for all classes) is the control: the attributed rows of
-- the 'class' group carry the random sets' mean and sd of the relative change and the one-sided
-- permutation p-value (factor < 1: a larger decrease; factor > 1: a larger increase).
CREATE TABLE knowledge_edits (
    method          TEXT NOT NULL,
    granularity     TEXT NOT NULL,      -- neuron
    target_class    INTEGER NOT NULL,   -- the class whose neurons (or, for random, whose probability) it is
    seed            INTEGER NOT NULL,   -- 0, or the random set's seed
    factor          REAL NOT NULL,      -- activation multiplier
    sequences       TEXT NOT NULL,      -- class | other: test sequences labelled target_class, or the rest
    modules         TEXT NOT NULL,
    n_neurons       INTEGER NOT NULL,
    n_sequences     INTEGER NOT NULL,
    p_before        REAL NOT NULL,      -- mean P(target_class) of the unedited model
    p_after         REAL NOT NULL,
    relative_change REAL NOT NULL,      -- mean of (p_after - p_before) / p_before
    prediction_changed REAL NOT NULL,   -- share of the sequences whose argmax changed
    random_mean     REAL,               -- attributed 'class' rows: the random sets' relative_change
    random_sd       REAL,
    n_random        INTEGER,
    p_value         REAL,
    PRIMARY KEY (method, granularity, target_class, seed, factor, sequences)
) WITHOUT ROWID;

-- Sanity checks (Adebayo et al. 2018, arXiv 1810.03292): each attributed ranking re-scored on
-- `sanity.max_sequences` sequences of the attribution split with a randomised model, and the
-- Spearman correlation with the same method's scores on the real model (same sequences).
-- check 'model_randomization': the classification head and the top `layers_randomized` blocks
-- re-initialised (cascading, 1 ... L); 'label_randomization': a model trained with the same spec
-- on shuffled train labels (layers_randomized 0). One (check, layers_randomized) is one unit,
-- keyed by the sanity parameters and the attribute and train stages' keys (not by the evidence
-- stage's), so changing evidence settings does not redo it.
CREATE TABLE sanity_units (
    check_name        TEXT NOT NULL,
    layers_randomized INTEGER NOT NULL,
    unit_key          TEXT NOT NULL,
    seconds           REAL NOT NULL,
    finished_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (check_name, layers_randomized)
);

CREATE TABLE sanity_checks (
    check_name        TEXT NOT NULL,
    layers_randomized INTEGER NOT NULL,
    method            TEXT NOT NULL,
    granularity       TEXT NOT NULL,
    target_class      INTEGER NOT NULL,
    spearman          REAL,             -- NULL when either score vector is constant
    n_scores          INTEGER NOT NULL,
    n_sequences       INTEGER NOT NULL,
    PRIMARY KEY (check_name, layers_randomized, method, granularity, target_class),
    FOREIGN KEY (check_name, layers_randomized) REFERENCES sanity_units (check_name, layers_randomized)
) WITHOUT ROWID;

-- Per ranking and check: the correlation with the fully randomised model (all L blocks and the
-- head) or the label-randomised one, and whether it is below `sanity.max_spearman` (passed = 1:
-- the ranking depends on the model; 0: it does not, the method fails the check).
CREATE TABLE sanity_verdicts (
    method       TEXT NOT NULL,
    granularity  TEXT NOT NULL,
    target_class INTEGER NOT NULL,
    check_name   TEXT NOT NULL,
    spearman     REAL,
    max_spearman REAL NOT NULL,
    passed       INTEGER NOT NULL,
    PRIMARY KEY (method, granularity, target_class, check_name)
) WITHOUT ROWID;

-- The evidence stage now also writes knowledge_edits: a run recorded before this migration
-- redoes it (its curves are recomputed under the new key) and the report after it.
DELETE FROM stages WHERE stage IN ('evidence', 'report');
