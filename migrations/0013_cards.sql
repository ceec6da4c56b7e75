-- The cards stage (issue 12): what each top neuron responds to, on real data. A neuron is an
-- output unit (layer, module, unit) of one of the six linear maps of an ESM-2 layer (for
-- `intermediate` the activation after GELU). Its activation on a sequence is summarised by its
-- peak: the largest activation over the sequence's residues (not <cls>, <eos>, padding) and the
-- residue where it is reached (the first within 1e-5 relative of it); peaks within that tolerance
-- of each other are ties everywhere on a card (float rounding differs between batch shapes).

-- card_neurons: which neurons get a card, and why. For each stored ranking (score set, seed 0,
-- not random): its top `cards.top` neurons (granularity 'neuron'), or for a weight ranking the
-- output units (rows) of its best-ranked weights, first `cards.top` distinct rows in rank order
-- (`best_rank` is the rank of the unit's best weight, or of the neuron itself).
CREATE TABLE card_neurons (
    method       TEXT NOT NULL,
    granularity  TEXT NOT NULL,
    target_class INTEGER NOT NULL,   -- -1 = true class
    card_rank    INTEGER NOT NULL,   -- 1 = the ranking's first card
    layer        INTEGER NOT NULL,
    module       TEXT NOT NULL,
    unit         INTEGER NOT NULL,
    best_rank    INTEGER NOT NULL,
    PRIMARY KEY (method, granularity, target_class, card_rank)
) WITHOUT ROWID;

-- card_shards: the resumable part. Shard i holds sequences i*shard_size ... of the card split
-- (ordered by id); `peaks` is, neuron by neuron in card order (card_index of neuron_profiles),
-- one (Float32 peak activation, Int32 peak residue) pair per sequence of the shard, little-endian.
CREATE TABLE card_shards (
    shard_index INTEGER PRIMARY KEY,
    content_key TEXT NOT NULL,
    n_sequences INTEGER NOT NULL,
    peaks       BLOB NOT NULL,
    seconds     REAL NOT NULL
);

-- neuron_profiles: one row per card neuron, over the sequences of `split`.
CREATE TABLE neuron_profiles (
    layer            INTEGER NOT NULL,
    module           TEXT NOT NULL,
    unit             INTEGER NOT NULL,
    card_index       INTEGER NOT NULL UNIQUE,   -- order of the neuron in card_shards.peaks
    split            TEXT NOT NULL,
    n_sequences      INTEGER NOT NULL,
    n_top            INTEGER NOT NULL,          -- top sequences behind enrichment, positions and top classes
    peak_max         REAL NOT NULL,             -- the largest peak
    peak_mean        REAL NOT NULL,             -- mean peak over all sequences
    peak_sd          REAL NOT NULL,
    n_terminal_share REAL NOT NULL,             -- share of the top sequences whose peak is in the first tenth of the sequence
    c_terminal_share REAL NOT NULL,             -- ... in the last tenth (0.1 each if position did not matter)
    best_class       INTEGER,                   -- class with the largest one-vs-rest AUROC (NULL: none defined,
    best_auroc       REAL,                      --   e.g. a split with one class)
    top_class_entropy REAL NOT NULL,            -- entropy (bits) of the classes of the top sequences
    top_class_entropy_max REAL NOT NULL,        -- log2 of the number of classes
    PRIMARY KEY (layer, module, unit)
) WITHOUT ROWID;

-- neuron_examples: the top `cards.examples` sequences by peak (kind 'top', rank 1 ...; tied peaks in
-- the order of the FNV-1a hash of the sequence ID) and one
-- sequence at each of the peak quantiles 0.9, 0.75, 0.5, 0.25, 0.1 (kind 'quantile',
-- quantile set). The window is the residues peak-7 ... peak+7 that exist (window_start is the
-- 1-based position of its first residue in the original sequence; peak_position likewise; residues
-- cropped away by model.max_length, which the model did not see, are in lower case).
-- For a planted run, motif_pattern is the planted motif holding the peak residue (NULL if none).
CREATE TABLE neuron_examples (
    layer          INTEGER NOT NULL,
    module         TEXT NOT NULL,
    unit           INTEGER NOT NULL,
    kind           TEXT NOT NULL,      -- 'top' or 'quantile'
    rank           INTEGER NOT NULL,   -- 1 ... within kind
    quantile       REAL,               -- kind 'quantile' only
    sequence_id    TEXT NOT NULL,
    ec_label       TEXT NOT NULL,
    peak_position  INTEGER NOT NULL,
    activation     REAL NOT NULL,
    window         TEXT NOT NULL,
    window_start   INTEGER NOT NULL,
    motif_pattern  TEXT,
    motif_is_decoy INTEGER,            -- 1 decoy, 0 class motif, NULL no motif
    PRIMARY KEY (layer, module, unit, kind, rank)
) WITHOUT ROWID;

-- neuron_enrichment: amino acid a at offset o (-3 ... 3) from the peak residue of the top
-- sequences, within the residues the model saw: count of n (the top sequences with a residue there), the split's background
-- frequency of a, log-odds ln(((count + 0.5) / (n + 10)) / background) (pseudo-count 0.5 per
-- amino acid), the exact two-sided binomial p-value of count against n x background, and the
-- Benjamini-Hochberg q-value over the neuron's 20 x 7 tests. Only the 20 standard amino acids.
CREATE TABLE neuron_enrichment (
    layer      INTEGER NOT NULL,
    module     TEXT NOT NULL,
    unit       INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    residue    TEXT NOT NULL,
    count      INTEGER NOT NULL,
    n          INTEGER NOT NULL,
    background REAL NOT NULL,
    log_odds   REAL NOT NULL,
    p_value    REAL NOT NULL,
    q_value    REAL NOT NULL,
    PRIMARY KEY (layer, module, unit, offset, residue)
) WITHOUT ROWID;

-- neuron_positions: relative position of the top sequences' peaks among the residues the model saw
-- (the peak residue's 0-based index in them + 0.5, over their number), in ten bins of a tenth each.
CREATE TABLE neuron_positions (
    layer  INTEGER NOT NULL,
    module TEXT NOT NULL,
    unit   INTEGER NOT NULL,
    bin    INTEGER NOT NULL,   -- 0 = first tenth (N-terminus) ... 9 = last tenth
    count  INTEGER NOT NULL,
    PRIMARY KEY (layer, module, unit, bin)
) WITHOUT ROWID;

-- neuron_classes: per class with sequences in the split, the mean and SD of the peak over the class's sequences of the split,
-- the one-vs-rest AUROC of the peak (midranks), and how many of the top sequences are of the class.
CREATE TABLE neuron_classes (
    layer       INTEGER NOT NULL,
    module      TEXT NOT NULL,
    unit        INTEGER NOT NULL,
    class_index INTEGER NOT NULL,
    n_sequences INTEGER NOT NULL,
    peak_mean   REAL NOT NULL,
    peak_sd     REAL NOT NULL,
    auroc       REAL,              -- NULL when the class has no sequence in the split or all of them
    top_count   INTEGER NOT NULL,
    PRIMARY KEY (layer, module, unit, class_index)
) WITHOUT ROWID;

-- neuron_subclasses: the EC numbers at level 2 and 3 (e.g. 3.4.-.-, 3.4.21.-) among the top
-- sequences (a sequence with several EC numbers counts once per distinct prefix), beside how
-- many sequences of the split carry it.
CREATE TABLE neuron_subclasses (
    layer       INTEGER NOT NULL,
    module      TEXT NOT NULL,
    unit        INTEGER NOT NULL,
    level       INTEGER NOT NULL,
    ec_number   TEXT NOT NULL,
    top_count   INTEGER NOT NULL,
    split_count INTEGER NOT NULL,
    PRIMARY KEY (layer, module, unit, level, ec_number)
) WITHOUT ROWID;

-- For a planted run: per ranking, the share of its card neurons' top windows whose peak residue
-- is inside a planted class motif (and inside a decoy), the card's answer to "does it find the motif".
CREATE VIEW card_motif_overlap AS
SELECT c.method, c.granularity, c.target_class,
       COUNT(DISTINCT c.card_rank) AS n_neurons, COUNT(*) AS n_windows,
       AVG(CASE WHEN e.motif_is_decoy = 0 THEN 1.0 ELSE 0.0 END) AS class_motif_share,
       AVG(CASE WHEN e.motif_is_decoy = 1 THEN 1.0 ELSE 0.0 END) AS decoy_share
FROM card_neurons c
JOIN neuron_examples e ON e.layer = c.layer AND e.module = c.module AND e.unit = c.unit AND e.kind = 'top'
GROUP BY c.method, c.granularity, c.target_class;

-- The report now follows the cards stage: a report recorded before it is written again.
DELETE FROM stages WHERE stage = 'report';
