"""The one representation of a network that every bound works on (:mod:`.graph`), its operators
(:mod:`.operators`, :mod:`.pooling`), the passes written once over it (:mod:`.passes`) and the matrix views
some methods need (:mod:`.chain`, :mod:`.views`)."""
