"""minigrad.datasets: loaders and caches for the embedded digits set and the standard image
data sets (to come; see the data-set issue). Imports nothing else of minigrad's."""
