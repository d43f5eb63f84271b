//! Rendering: heat maps to colour, blended over the grey slice, with a burned-in legend.
