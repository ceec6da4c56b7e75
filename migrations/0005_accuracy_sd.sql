-- accuracy_table computed the standard deviation over seeds with the one-pass formula
-- sqrt((sum x^2 - n mean^2) / (n - 1)), whose cancellation gave ~2e-9 instead of 0 for
-- identical accuracies. Two passes: the mean first, then the squared deviations from it.
DROP VIEW accuracy_table;

-- Accuracy per method x retention fraction; random as mean and standard deviation over seeds.
CREATE VIEW accuracy_table AS
SELECT e.method, e.retention_fraction, COUNT(*) AS n_seeds,
       AVG(e.accuracy) AS accuracy_mean,
       CASE WHEN COUNT(*) > 1 THEN
         sqrt(SUM((e.accuracy - m.mean) * (e.accuracy - m.mean)) / (COUNT(*) - 1))
       END AS accuracy_sd,
       AVG(e.macro_f1) AS macro_f1_mean
FROM evaluations e
JOIN (SELECT method, retention_fraction, AVG(accuracy) AS mean FROM evaluations GROUP BY method, retention_fraction) m
  ON m.method = e.method AND m.retention_fraction = e.retention_fraction
GROUP BY e.method, e.retention_fraction;
