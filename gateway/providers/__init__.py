"""Provider adapters: one module per wire-format family, one internal shape above them."""
