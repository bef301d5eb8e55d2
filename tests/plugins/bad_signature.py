from mmcore import hookimpl


@hookimpl
def register_components(register, not_in_the_spec):
    pass
