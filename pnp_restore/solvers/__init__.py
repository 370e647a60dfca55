"""Training-free solvers: DDPM/DDIM, DPS, DDRM, DDNM(+), DiffPIR, PnP-ADMM."""
