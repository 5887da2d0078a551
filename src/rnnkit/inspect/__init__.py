"""Seeing inside recurrent models: recorded activations and gates, neuron pages,
gradient flow over time lag, embedding neighbours and plots.

    record(model)                     rnnkit.inspect.record: hidden states, cell states, gates per step
    neuron_page(...)                  rnnkit.inspect.neurons: text coloured by a unit, top-5 guesses (HTML)
    PREDICATES, find_neurons(...)     rnnkit.inspect.predicates / neurons: units that track a property
    gradient_by_lag(...)              rnnkit.inspect.gradients: |dL_T/dh_k| against T - k
    nearest(...), plot_embeddings     rnnkit.inspect.embeddings
    load_word2vec(...)                rnnkit.inspect.pretrained: word2vec vectors into an embedding

The commands `rnnkit neurons`, `gradients`, `embeddings`, `word2vec` drive these.
Only `record` is imported here; the others import matplotlib, scikit-learn or gensim
when used.
"""
from .record import GATE_KINDS, Recording, Trace, record

__all__ = ["record", "Recording", "Trace", "GATE_KINDS"]
