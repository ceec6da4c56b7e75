-- The neurons stage computes the motif selectivity in shards of neurons (as many as fit
-- `neurons.memory_mb`), one forward pass over the test split each, and commits each shard's
-- motif_selectivity rows with its row here in one transaction, so a killed run redoes only
-- the unfinished neurons. A shard is the neurons first_neuron ..< first_neuron + n_neurons of
-- the stage's layout (every neuron of the six linear maps, layer by layer in canonical module
-- order); content_key is the stage's key it was computed under.
CREATE TABLE selectivity_shards (
    first_neuron INTEGER PRIMARY KEY,
    n_neurons    INTEGER NOT NULL,
    content_key  TEXT NOT NULL,
    seconds      REAL NOT NULL
);
