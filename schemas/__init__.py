"""The wire contract and the job spec shared by the controller and the agents.

Nothing here imports from the other packages of the project.
"""
