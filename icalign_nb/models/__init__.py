"""Models: the registry of names a user can type (`registry`), building loadable folders once into the
cache (`builds`), loading tokenizers and models in the right dtype on the right device (`loading`),
and how prompts become token ids (`tokens`). Import from the module that holds a name."""
