"""Upper bounds on the integer optimum of the selection program, one module per method.

* :mod:`~direct_opt.bounds.subspace` — scalable: ``||G x||^2`` split over orthogonal blocks
  of eigen-directions of ``G G^T``, each block bounded by a branch and bound over the
  directions of its sphere with the structured LMO, plus a spectral tail (any N);
* :mod:`~direct_opt.bounds.rlt` — the Reformulation–Linearisation (RLT) LP of the
  quadratic program over products ``y_ij = x_i x_j`` (small N), made rigorous from its
  dual; the same model as a MILP is the ``exact`` backend;
* :mod:`~direct_opt.bounds.sdp` — Shor's SDP relaxation strengthened by the RLT rows
  (small N, cvxpy + SCS/Clarabel), made rigorous from its dual.

:mod:`direct_opt.certificates` chooses between them (``certify=``).
"""
