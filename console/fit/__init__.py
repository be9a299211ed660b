"""Will it fit: the memory a model needs on an engine (predicted), what it took (measured), and which model a GPU
process's memory belongs to (attributed). No UI; docs/fit.md has the formula and its accuracy."""
