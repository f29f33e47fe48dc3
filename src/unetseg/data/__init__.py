from .cache import Chips, load_chips
from ..errors import DataError
from .folder import Pair, Scan, scan_folder
from .split import load_split, make_split, save_split

__all__ = ["Chips", "DataError", "Pair", "Scan", "load_chips", "load_split", "make_split", "save_split", "scan_folder"]
