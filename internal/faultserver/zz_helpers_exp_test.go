package faultserver

import "errors"

func errorsAs(err error, target any) bool { return errors.As(err, target) }
func unwrapAll(err error) error {
	for err != nil {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
	return nil
}
