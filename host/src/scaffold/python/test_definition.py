"""The {name} slice's logic, natively: {sdk}/test.sh ."""

import unittest

from counterpoint import Rejected
from counterpoint.testing import TestStore

from definition import Greet, slice_


class GreeterTest(unittest.TestCase):
    def test_greets_once(self):
        store = TestStore(slice_)
        self.assertEqual(store.run(Greet("Ada")), "Hello, Ada!")
        with self.assertRaises(Rejected):
            store.run(Greet("Ada"))
        self.assertEqual(len(store.events), 1)
        self.assertEqual(store.project("greetings"), 1)


if __name__ == "__main__":
    unittest.main()
