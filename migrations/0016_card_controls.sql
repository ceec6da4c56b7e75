-- A control for the cards' motif overlap on a planted run (issue 12): random neurons of each
-- module measured like the card neurons, so "the share of a ranking's top windows peaking in a
-- planted motif" is tested against random neurons of the same modules instead of only read
-- against the residues' share.
--
-- card_controls: the control neurons, a seeded sample of cards.control neurons per linear map
-- (over all layers; every neuron of the map when it has fewer), their index in
-- card_shards.peaks (the index space of neuron_profiles.card_index: card and control neurons
-- are one sorted list), and of their cards.examples top sequences (ordered as a card orders
-- them) how many have the peak inside a planted class motif and inside a decoy.
CREATE TABLE card_controls (
    layer               INTEGER NOT NULL,
    module              TEXT NOT NULL,
    unit                INTEGER NOT NULL,
    card_index          INTEGER NOT NULL UNIQUE,
    n_windows           INTEGER NOT NULL,
    class_motif_windows INTEGER NOT NULL,
    decoy_windows       INTEGER NOT NULL,
    PRIMARY KEY (layer, module, unit)
) WITHOUT ROWID;

-- card_control_classes: of a control neuron's top windows, how many peak inside the motif of
-- class class_index (rows with windows > 0 only).
CREATE TABLE card_control_classes (
    layer       INTEGER NOT NULL,
    module      TEXT NOT NULL,
    unit        INTEGER NOT NULL,
    class_index INTEGER NOT NULL,
    windows     INTEGER NOT NULL,
    PRIMARY KEY (layer, module, unit, class_index)
) WITHOUT ROWID;

-- card_motif_tests: per ranking with cards and motif kind ('class': any class motif; 'own_class':
-- the ranking's own class's motif, per-class rankings only; 'decoy'), the mean over its card
-- neurons of the share of their top windows peaking there, against n_random random sets of as
-- many control neurons drawn module by module in the ranking's numbers (without replacement
-- within a module): their mean and sd and the one-sided permutation p-value
-- (1 + #{random >= share}) / (1 + n_random).
CREATE TABLE card_motif_tests (
    method       TEXT NOT NULL,
    granularity  TEXT NOT NULL,
    target_class INTEGER NOT NULL,
    motif        TEXT NOT NULL,
    n_neurons    INTEGER NOT NULL,
    share        REAL NOT NULL,
    random_mean  REAL NOT NULL,
    random_sd    REAL NOT NULL,
    n_random     INTEGER NOT NULL,
    p_value      REAL NOT NULL,
    PRIMARY KEY (method, granularity, target_class, motif)
) WITHOUT ROWID;

-- On a planted run the cards stage has a new parameter (cards.control, part of its key only
-- there): its recorded result is redone (seconds). Other runs keep their cards; every report
-- is written again (it now draws the cards).
DELETE FROM card_shards WHERE EXISTS (SELECT 1 FROM planted_motifs);
DELETE FROM stages WHERE stage = 'cards' AND EXISTS (SELECT 1 FROM planted_motifs);
DELETE FROM stages WHERE stage = 'report';
