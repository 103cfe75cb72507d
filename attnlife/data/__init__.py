"""Character-level datasets: registry of sources, `prepare_dataset` -> memmap bins + meta.json,
`load_prepared`, and the seeded `BatchSampler`. See docs/data.md."""
from attnlife.data.batches import BatchSampler, SplitTooShortError
from attnlife.data.dataset import (DatasetNotPreparedError, PreparedDataset, UnknownSymbolError,
                                   load_prepared)
from attnlife.data.prepare import UnknownDatasetError, prepare_dataset
from attnlife.data.registry import DATASETS, DatasetSpec, dataset_names
from attnlife.data.sources import cache_dir

__all__ = ["BatchSampler", "DATASETS", "DatasetNotPreparedError", "DatasetSpec", "PreparedDataset",
           "SplitTooShortError", "UnknownDatasetError", "UnknownSymbolError", "cache_dir",
           "dataset_names", "load_prepared", "prepare_dataset"]
