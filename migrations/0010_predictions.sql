-- The full model's prediction for every test sequence (evaluate stage): the confusion matrix of
-- the report, and a table to join with `sequences`, `labels` and the scores in SQL. Submodels'
-- predictions are not stored (only their accuracy and per-class counts, `evaluation_classes`).
CREATE TABLE predictions (
    sequence_id     TEXT PRIMARY KEY REFERENCES sequences(id),
    true_class      INTEGER NOT NULL,   -- classes.class_index of the sequence's label
    predicted_class INTEGER NOT NULL,   -- argmax of the full model's logits (lowest index on ties)
    p_true          REAL NOT NULL,      -- softmax probability of true_class
    p_predicted     REAL NOT NULL       -- softmax probability of predicted_class
) WITHOUT ROWID;

-- Rows = true class, columns = predicted class, n = test sequences.
CREATE VIEW confusion AS
    SELECT true_class, predicted_class, COUNT(*) AS n FROM predictions GROUP BY true_class, predicted_class;

-- A run recorded before this migration redoes evaluate (seconds to minutes; deterministic, so its
-- numbers stay the same and later stages keep their keys) to fill `predictions`, and the report
-- after it. Its old evaluations stay until then: the evaluate stage replaces them when it commits.
DELETE FROM stages WHERE stage IN ('evaluate', 'report');
