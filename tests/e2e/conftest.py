"""The page's browser fixtures (``browser``, ``page``, ``rest``, ``console``) for every module of the page's tests:
defined with ``test_operator_page``, the first of them, and shared from here so the others need not import them
(an imported fixture that a test then names as an argument reads to linters as a redefinition)."""

from tests.e2e.test_operator_page import browser, console, page, rest  # noqa: F401
