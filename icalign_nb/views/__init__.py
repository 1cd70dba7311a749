"""What people see: figures (style, retrieval, results), the pool map, notebook tables and side-by-side
HTML, the systems compared side by side, the paper's figures and the explorer widget."""
