//! Pure functions from specs to desired objects: no client, no I/O.
