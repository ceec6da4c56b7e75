-- The neurons stage (issue 12): what each neuron responds to. For a planted-knowledge run
-- (planted_motifs not empty) the motif selectivity of every neuron and how well each neuron
-- ranking recovers the planted knowledge.
--
-- motif_selectivity: for neuron (layer, module, unit) of the six linear maps and the class
-- motif of class_index, the AUROC of its activation at the residues of that class's planted
-- motifs against every other residue of the same sequences (the split `split`), midranks for ties.
CREATE TABLE motif_selectivity (
    layer       INTEGER NOT NULL,
    module      TEXT NOT NULL,
    unit        INTEGER NOT NULL,
    class_index INTEGER NOT NULL,   -- classes.class_index whose motif it is
    auroc       REAL,               -- NULL when the motif has no residue in the split
    split       TEXT NOT NULL,
    PRIMARY KEY (layer, module, unit, class_index)
) WITHOUT ROWID;

-- planted_recovery: for each neuron ranking (score set of granularity 'neuron', seed 0) and k,
-- the mean selectivity of its top k neurons (true-class rankings: each neuron's best class
-- motif; per-class rankings: the motif of their class) against `n_random` random sets of k
-- neurons drawn module by module in the same numbers (one-sided permutation p-value), and the
-- share of the top k with selectivity >= 0.9 (precision at k) beside random's.
CREATE TABLE planted_recovery (
    method           TEXT NOT NULL,
    granularity      TEXT NOT NULL,
    target_class     INTEGER NOT NULL,
    k                INTEGER NOT NULL,
    mean_selectivity REAL NOT NULL,
    random_mean      REAL NOT NULL,
    random_sd        REAL NOT NULL,
    n_random         INTEGER NOT NULL,
    p_value          REAL NOT NULL,
    precision_at_k   REAL NOT NULL,
    random_precision REAL NOT NULL,
    PRIMARY KEY (method, granularity, target_class, k)
) WITHOUT ROWID;

-- The report now follows the neurons stage: a report recorded before it is written again.
DELETE FROM stages WHERE stage = 'report';
