"""The brain of a scale-out center: one server over several Asterisk nodes.

:mod:`~dispatcher.cluster.merged` folds the nodes' live models into the one view the
wallboard, console and metrics read; :mod:`~dispatcher.cluster.ami` is the one AMI the
features speak to (events from every node, actions to the node that holds the channel or
to a healthy one); :mod:`~dispatcher.cluster.desks` carries the operators' paused and
logged-out desks to a node that rejoins; :mod:`dispatcher.brain` (a builder, beside
:mod:`dispatcher.app`) assembles them with a call log per node on the one PostgreSQL
database.
"""
