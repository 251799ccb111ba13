"""CA-Edit core: local attribute inpainting (CA2, reference net, STFG). May import lato_core, never the reverse."""
