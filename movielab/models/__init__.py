"""Plain nn.Modules (one file per architecture) and the LightningModules that train them."""
