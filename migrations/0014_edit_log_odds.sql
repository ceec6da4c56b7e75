-- knowledge_edits gains log_odds_change, the mean over the sequences of
-- logit(p_after) - logit(p_before) of the target class (nats; logit p = log(p / (1 - p)), from
-- the log-softmax so that it is exact for p near 0 or 1), and the control and the permutation
-- test now use it: random_mean / random_sd are the random sets' log_odds_change and p_value is
-- one-sided on it (factor < 1: a larger decrease; factor > 1: a larger increase). The mean
-- relative change (p_after - p_before) / p_before is kept for comparison with Dai et al. 2021,
-- but it is dominated by sequences whose p_before was tiny and explodes on a confident model.
-- The table is rebuilt empty; the evidence stage refills it (its curves are kept: their key
-- has not changed) and the report is written again.
DROP TABLE knowledge_edits;
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
    log_odds_change REAL NOT NULL,      -- mean of logit(p_after) - logit(p_before), nats
    relative_change REAL NOT NULL,      -- mean of (p_after - p_before) / p_before
    prediction_changed REAL NOT NULL,   -- share of the sequences whose argmax changed
    random_mean     REAL,               -- attributed 'class' rows: the random sets' log_odds_change
    random_sd       REAL,
    n_random        INTEGER,
    p_value         REAL,               -- one-sided permutation p on log_odds_change
    PRIMARY KEY (method, granularity, target_class, seed, factor, sequences)
) WITHOUT ROWID;
DELETE FROM stages WHERE stage IN ('evidence', 'report');
