"""Classification stage (workflow/rules/classification.smk): models (incl. the COVID-Net PEPX
re-implementations), recipes, inputs, samplers, augmentation, the training loop, prediction,
and Tables 3-7."""
