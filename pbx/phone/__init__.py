"""Headless SIP phones on pjsua2: the softphone library, tone detection, the hotline probe."""
