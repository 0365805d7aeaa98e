//! Placeholder: written by the residual/cross-head helper (DESIGN.md §1.2).
