"""IVR menus, languages and prompt building."""
