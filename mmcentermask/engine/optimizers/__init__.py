from .skip_non_finite_optim_wrapper import SkipNonFiniteOptimWrapper

__all__ = ['SkipNonFiniteOptimWrapper']
