"""`python -m ssl_jax.augment --preset simclr --out grid.png`: see `grid.main`."""
from ssl_jax.augment.grid import main

if __name__ == "__main__":
  main()
