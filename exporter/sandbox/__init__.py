"""The built-in sandbox organization: moto in server mode, extended for AWS root-user facts."""

from exporter.sandbox.scenario import MANAGEMENT_ACCOUNT_ID, Scenario, ScenarioError, load_scenario
from exporter.sandbox.server import SANDBOX_ENV, Sandbox

__all__ = ["MANAGEMENT_ACCOUNT_ID", "SANDBOX_ENV", "Sandbox", "Scenario", "ScenarioError", "load_scenario"]
