//! SD1.5 networks in burn (being written).
