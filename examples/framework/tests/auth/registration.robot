*** Settings ***
Documentation    Self-registration of new customer accounts.
Resource    resources/common.resource
Resource    resources/auth.resource
Suite Setup    Open Shop Session
Suite Teardown    Close Shop Session


*** Test Cases ***
SHOP-105 Register New Customer
    [Documentation]    A visitor registers an account and can log in with it right away.
    [Tags]    SHOP-105    auth    smoke
    ${username}=    Generate Unique Username    newbie
    Register Customer    ${username}    Str0ngPass!    ${username}@example.com
    Login As    ${username}    Str0ngPass!
    User Should Be Logged In    ${username}

SHOP-106 Registration Rejects Existing Username
    [Documentation]    User names are unique.
    [Tags]    SHOP-106    auth    regression
    Registration Should Fail With Message    alice    Another123!    alice2@example.com
    ...    Username already exists    expected_status=409

SHOP-107 Registration Rejects Short Password
    [Documentation]    Passwords need at least 8 characters.
    [Tags]    SHOP-107    auth    regression
    ${username}=    Generate Unique Username
    Registration Should Fail With Message    ${username}    short    ${username}@example.com
    ...    Password must be at least 8 characters
